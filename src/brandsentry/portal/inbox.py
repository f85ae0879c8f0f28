"""The brand inbox: the listings that scoring runs flagged or sent to review under a brand, and the brand's
answers on them (counterfeit, authentic, not ours), which go into the feedback ledger as the brand's.

Every read goes through one query of the scoring ledger filtered by the caller's brand, so a listing id or
run of another brand reads as "not found", like a listing that does not exist.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from brandsentry.catalog import Catalog
from brandsentry.config import Workspace
from brandsentry.feedback import (
    BRAND_ANSWERS,
    BrandAnswer,
    brand_answers,
    brand_verdict,
    ensure_feedback,
    record_brand_answer,
)
from brandsentry.images import DecodeLimits, ImageDecodeError, decode_image
from brandsentry.ledger import LEDGER_TABLES
from brandsentry.portal.auth import AuditLog, Principal
from brandsentry.portal.errors import Conflict, Forbidden, NotFound, Unprocessable
from brandsentry.run_folder import EVIDENCE_DIR, EVIDENCE_ITEMS, ScoringResultsError

INBOX_DECISIONS = ("flag", "review")
_INBOX_COLUMNS = (
    "run_dir", "listing_id", "claimed_brand", "claimed_product", "image_path", "seller_id", "scored_at",
    "decision", "score", "model_version",
)  # fmt: skip


@dataclass(frozen=True)
class InboxItem:
    """One listing of a brand's inbox: its latest flag/review scoring, and the brand's answer if any.

    `run` is the scoring run's folder name (the day), which is all of the run a brand is shown."""

    listing_id: str
    run: str
    scored_at: str
    decision: str
    score: float | None
    product: str | None
    seller_id: str | None
    has_evidence: bool
    answer: BrandAnswer | None


@dataclass(frozen=True)
class Inbox:
    items: list[InboxItem]
    runs: list[str]  # every run with listings in the brand's inbox, newest first (what the filter offers)
    products: list[str]


def _evidence_files(run_dir: str) -> dict[str, Path]:
    """{listing id: its image on the run's evidence page} (`review` writes one for top flagged listings);
    empty when the run has no readable evidence page."""
    evidence = Path(run_dir) / EVIDENCE_DIR
    try:
        items = json.loads((evidence / EVIDENCE_ITEMS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = {}
    for item in items:
        if isinstance(item, dict) and item.get("image_file"):
            path = evidence / Path(str(item["image_file"])).name  # never a path out of the folder
            if path.is_file():
                found[str(item.get("listing_id"))] = path
    return found


def small_jpeg(path: Path, limits: DecodeLimits, side: int, what: str) -> bytes:
    """A JPEG of the image at `path` fitting `side` (reference and listing thumbnails alike); an unreadable
    image is 'not found', naming `what`."""
    try:
        pixels = decode_image(path, limits, target_size=side)
    except ImageDecodeError as exc:
        raise NotFound(f"{what} unreadable ({exc.reason})") from None
    image = Image.fromarray(pixels)
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class BrandInbox:
    """The inbox operations over the portal's catalog: each answer and its audit row share one transaction."""

    def __init__(self, catalog: Catalog, audit: AuditLog, limits: DecodeLimits, thumbnail_side: int):
        self.catalog = catalog
        self.audit = audit
        self.limits = limits
        self.thumbnail_side = thumbnail_side
        catalog.ensure_schema(LEDGER_TABLES)
        ensure_feedback(catalog)

    def _scorings(self, principal: Principal, listing_id: str | None = None) -> list[dict]:
        """Every flag/review scoring of the caller's brand (as the scorer matches brands; of one listing,
        when named), newest first.

        The one query through which the inbox reads the ledger: a listing of another brand is never
        selected, whatever id or run the request names."""
        if principal.is_admin:
            raise Forbidden("the inbox belongs to a brand: sign in with that brand's token")
        one = "AND listing_id = ? " if listing_id is not None else ""
        rows = self.catalog.connection().execute(
            f"SELECT {', '.join(_INBOX_COLUMNS)} FROM scored_listings "
            "WHERE lower(trim(claimed_brand)) = lower(trim(?)) "
            f"AND decision IN (SELECT value FROM json_each(?)) {one}ORDER BY scored_at DESC, run_dir DESC",
            (principal.brand, json.dumps(INBOX_DECISIONS), *([listing_id] if one else [])),
        )
        return [dict(zip(_INBOX_COLUMNS, row, strict=True)) for row in rows.fetchall()]

    def _scoring(self, principal: Principal, listing_id: str, run: str | None = None) -> dict:
        """The listing's latest flag/review scoring of the caller's brand (in `run`, when named); a listing
        of another brand, or of no inbox, is 'not found' alike."""
        for scoring in self._scorings(principal, listing_id):
            if run in (None, Path(scoring["run_dir"]).name):
                return scoring
        raise NotFound(f"no listing {listing_id!r} in the inbox" + (f" of run {run!r}" if run else ""))

    def listings(
        self,
        principal: Principal,
        run: str | None = None,
        decision: str | None = None,
        product: str | None = None,
    ) -> Inbox:
        """The caller's brand's flagged and review-queued listings, each at its latest such scoring (or at
        its scoring in `run`), newest first, narrowed by decision and product."""
        if decision is not None and decision not in INBOX_DECISIONS:
            raise Unprocessable(f"unknown decision {decision!r} (one of {', '.join(INBOX_DECISIONS)})")
        scorings = self._scorings(principal)
        runs = list(dict.fromkeys(Path(s["run_dir"]).name for s in scorings))
        products = sorted({s["claimed_product"] for s in scorings if s["claimed_product"]}, key=str.casefold)
        if run is not None and run not in runs:
            raise NotFound(f"no run {run!r} in the inbox")
        latest: dict[str, dict] = {}
        for scoring in scorings:
            if run in (None, Path(scoring["run_dir"]).name):
                latest.setdefault(scoring["listing_id"], scoring)
        chosen = [
            s
            for s in latest.values()
            if decision in (None, s["decision"]) and product in (None, s["claimed_product"])
        ]
        answers = brand_answers(self.catalog, [s["listing_id"] for s in chosen])
        evidence = {run_dir: _evidence_files(run_dir) for run_dir in {s["run_dir"] for s in chosen}}
        items = [
            InboxItem(
                listing_id=s["listing_id"],
                run=Path(s["run_dir"]).name,
                scored_at=s["scored_at"],
                decision=s["decision"],
                score=s["score"],
                product=s["claimed_product"],
                seller_id=s["seller_id"],
                has_evidence=s["listing_id"] in evidence[s["run_dir"]],
                answer=answers.get(s["listing_id"]),
            )
            for s in chosen
        ]
        return Inbox(items, runs, products)

    def answer(
        self, principal: Principal, listing_id: str, answer: str, note: str = "", run: str | None = None
    ) -> BrandAnswer:
        """Record the brand's answer on one of its inbox listings, superseding its earlier answer there;
        the answer and its audit row share one transaction."""
        if answer not in BRAND_ANSWERS:
            raise Unprocessable(f"unknown answer {answer!r} (one of {', '.join(BRAND_ANSWERS)})")
        scoring = self._scoring(principal, listing_id, run)
        try:  # the run's results are read before the write transaction, which stays short
            verdict = brand_verdict(scoring, answer, principal.actor, note)
        except ScoringResultsError as exc:
            raise Conflict(f"listing {listing_id!r} cannot be answered: {exc}") from None
        with self.catalog.write():
            stored = record_brand_answer(self.catalog, verdict)
            self.audit.record(
                actor=principal.actor,
                brand=principal.brand,
                action="answer",
                target=listing_id,
                outcome="ok",
                detail={"answer": answer, "run": Path(scoring["run_dir"]).name},
            )
        return stored

    def thumbnail(self, principal: Principal, listing_id: str) -> bytes:
        """A small JPEG of the listing's photo, as scored (the image path the run read)."""
        scoring = self._scoring(principal, listing_id)
        return small_jpeg(
            Path(scoring["image_path"]), self.limits, self.thumbnail_side, f"listing {listing_id!r}: photo"
        )

    def evidence(self, principal: Principal, listing_id: str, run: str | None = None) -> bytes:
        """The listing's evidence image (photo beside its nearest reference, cues drawn) from its run."""
        scoring = self._scoring(principal, listing_id, run)
        path = _evidence_files(scoring["run_dir"]).get(scoring["listing_id"])
        if path is None:
            raise NotFound(f"no evidence for listing {listing_id!r} in run {Path(scoring['run_dir']).name!r}")
        return path.read_bytes()


def brand_report(workspace: Workspace, principal: Principal, period: str) -> tuple[dict, str]:
    """The signed-in brand's transparency report of a month (numbers, HTML page), its own listings only.

    The report's own errors are not passed on: for an unknown brand they list the brands scored."""
    from brandsentry.alliance.report import brand_report_page, period_window
    from brandsentry.alliance.window import AllianceError

    if principal.is_admin:
        raise Forbidden(
            "a transparency report in the portal belongs to a brand: `brandsentry report` for all"
        )
    try:
        period_window(period)
    except AllianceError as exc:
        raise Unprocessable(str(exc).replace("--period ", "period ")) from None
    try:
        return brand_report_page(workspace, period, principal.brand)
    except AllianceError:
        raise NotFound(f"no listing of {principal.brand} was scored in {period}") from None
