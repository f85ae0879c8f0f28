"""The JSON API's request and response bodies; the `of` constructors keep the wire format apart from the
catalog's and the service's own types."""

from __future__ import annotations

from pydantic import BaseModel

from brandsentry.catalog import Reference
from brandsentry.ingest import IngestOutcome
from brandsentry.portal.checks import CheckResult
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
