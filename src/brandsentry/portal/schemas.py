"""The JSON API's request and response bodies; the `of` constructors keep the wire format apart from the
catalog's and the service's own types."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import BaseModel, Field

from brandsentry.catalog import Reference
from brandsentry.feedback import BrandAnswer
from brandsentry.ingest import IngestOutcome
from brandsentry.portal.checks import CheckResult
from brandsentry.portal.inbox import InboxItem
from brandsentry.portal.service import PendingItem


class ReferenceOut(BaseModel):
    id: int
    brand: str
    product: str
    view: str
    status: str
    width: int
    height: int
    sha256: str
    submitted_by: str
    submitted_at: str
    status_changed_at: str
    reason: str | None
    source_name: str | None

    @classmethod
    def of(cls, reference: Reference) -> ReferenceOut:
        return cls(**{name: getattr(reference, name) for name in cls.model_fields})


class OutcomeOut(BaseModel):
    file: str
    status: str  # accepted | duplicate | rejected
    reference_id: int | None
    duplicate_of: int | None
    reason: str | None
    detail: str
    warnings: list[str]

    @classmethod
    def of(cls, outcome: IngestOutcome) -> OutcomeOut:
        return cls(
            file=outcome.source,
            status=outcome.status,
            reference_id=outcome.reference_id,
            duplicate_of=outcome.duplicate_of,
            reason=outcome.reason,
            detail=outcome.detail,
            warnings=list(outcome.warnings),
        )


class UploadOut(BaseModel):
    product: str  # the product the photos are filed under: an existing one when the name means it
    accepted: int
    duplicate: int
    rejected: int
    outcomes: list[OutcomeOut]


class CheckOut(BaseModel):
    code: str
    level: str  # warning | note
    message: str

    @classmethod
    def of(cls, check: CheckResult) -> CheckOut:
        return cls(code=check.code, level=check.level, message=check.message)


class PendingOut(BaseModel):
    reference: ReferenceOut
    checks: list[CheckOut]

    @classmethod
    def of(cls, item: PendingItem) -> PendingOut:
        return cls(reference=ReferenceOut.of(item.reference), checks=[CheckOut.of(c) for c in item.checks])


class MeOut(BaseModel):
    key_id: str
    name: str
    role: str
    brand: str | None


class ReasonIn(BaseModel):
    reason: str | None = None


class AnswerOut(BaseModel):
    listing_id: str
    answer: str  # counterfeit | authentic | not_ours
    reviewer: str  # the token that answered, as the audit log names it
    note: str
    answered_at: str
    run: str  # the scoring run (folder name) whose scoring was judged

    @classmethod
    def of(cls, answer: BrandAnswer) -> AnswerOut:
        return cls(
            listing_id=answer.listing_id,
            answer=answer.answer,
            reviewer=answer.reviewer,
            note=answer.note,
            answered_at=answer.answered_at,
            run=Path(answer.run_dir).name,
        )


class InboxItemOut(BaseModel):
    listing_id: str
    run: str
    scored_at: str
    decision: str  # flag | review
    score: float | None
    product: str | None
    seller_id: str | None
    thumbnail_url: str
    evidence_url: str | None  # None when the run's evidence page does not hold the listing
    answer: AnswerOut | None

    @classmethod
    def of(cls, item: InboxItem) -> InboxItemOut:
        base = f"/api/v1/inbox/{quote(item.listing_id, safe='')}"
        return cls(
            listing_id=item.listing_id,
            run=item.run,
            scored_at=item.scored_at,
            decision=item.decision,
            score=item.score,
            product=item.product,
            seller_id=item.seller_id,
            thumbnail_url=f"{base}/thumbnail",
            evidence_url=f"{base}/evidence?run={quote(item.run, safe='')}" if item.has_evidence else None,
            answer=AnswerOut.of(item.answer) if item.answer else None,
        )


class AnswerIn(BaseModel):
    answer: Literal["counterfeit", "authentic", "not_ours"]
    note: str = Field("", max_length=2000)
    run: str | None = None  # answer the listing's scoring in this run (default: its latest flag/review one)
