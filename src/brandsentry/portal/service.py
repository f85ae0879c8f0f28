"""What the portal does, independent of HTML or JSON: every page and API endpoint is a thin call into `BrandPortal`.

Every operation takes the caller's `Principal` and enforces the one rule that matters most: a brand token
reads and writes only its own brand. Another brand's reference reads as "not found", so ids do not leak
which references exist. Every change and every refusal is written to the audit log, the change and its
audit row in one transaction. The brand inbox (`inbox.BrandInbox`, `BrandPortal.inbox`) follows the same rules.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from brandsentry import index_sync
from brandsentry.catalog import STATUSES, VIEWS, Catalog, CatalogError, Reference
from brandsentry.config import Workspace, require
from brandsentry.errors import ConfigError
from brandsentry.images import DecodeLimits, ImageDecodeError, open_image
from brandsentry.ingest import (
    ImageStore,
    IngestOutcome,
    IngestSettings,
    guarded_ingest,
    ingest_reference,
    safe_source_name,
)
from brandsentry.portal.auth import AuditEntry, AuditLog, Principal, SessionStore, TokenStore
from brandsentry.portal.checks import CheckResult, CheckSettings, ReferenceChecker, checks_for, record_checks
from brandsentry.portal.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PortalError,
    TooLarge,
    Unauthenticated,
    Unprocessable,
)
from brandsentry.portal.inbox import BrandInbox, small_jpeg
from brandsentry.settings import load_settings
from brandsentry.synth.brands import slugify

if TYPE_CHECKING:
    from brandsentry.embed import Embedder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortalSettings:
    """The `portal` config group (configs/portal/)."""

    host: str
    port: int
    secure_cookies: bool  # true behind HTTPS: the session cookie is never sent over plain HTTP
    session_max_age_s: int
    max_file_bytes: int  # per photo (413 beyond)
    max_files: int  # photos per upload request (413 beyond)
    max_pixels: int  # declared width x height per photo (422 beyond)
    thumbnail_side: int
    page_size: int  # references per page of the references list
    update_index: bool  # approvals and withdrawals update the index at once
    checks: CheckSettings

    @classmethod
    def from_config(cls, portal_cfg) -> PortalSettings:
        return load_settings(cls, portal_cfg, "portal")

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_files", "max_pixels", "thumbnail_side", "page_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"portal.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def max_request_bytes(self) -> int:
        """Largest request body worth reading: a full upload plus room for the form fields."""
        return self.max_files * self.max_file_bytes + (1 << 20)


@dataclass(frozen=True)
class UploadedFile:
    """One file of an upload request. `filename` is shown to people only; it never becomes a path."""

    filename: str | None
    data: bytes


@dataclass(frozen=True)
class ListPage:
    """One page of a list (references, inbox listings): `items` of the `total` that match, page `number`
    of `pages`."""

    items: list
    total: int
    number: int
    pages: int

    @classmethod
    def of(cls, found: list, page: int, size: int) -> ListPage:
        """Page `page` of `found`, `size` per page, clamped to the pages there are."""
        pages = max(1, -(-len(found) // size))
        number = min(max(page, 1), pages)
        return cls(found[(number - 1) * size : number * size], len(found), number, pages)


@dataclass(frozen=True)
class PendingItem:
    reference: Reference
    checks: tuple[CheckResult, ...]


class IndexUpdater:
    """Brings the index up to date with the catalog after approvals and withdrawals, one update at a time,
    after the response.

    Requests that arrive while an update runs set a flag; the running update goes round once more, so
    an approval is never left behind. A failed update leaves the references approved: the next update
    (here or `brandsentry index update`) picks them up.
    """

    def __init__(self, cfg, audit: AuditLog, embedder: Callable[[], Embedder]):
        self.cfg = cfg
        self.audit = audit
        self.embedder = embedder  # the portal's own model: no second copy loaded per update
        self._running = threading.Lock()
        self._wanted = threading.Event()

    def request(self) -> None:
        self._wanted.set()
        while self._wanted.is_set():
            if not self._running.acquire(blocking=False):
                return  # the update in progress will see the flag and run again
            try:
                self._wanted.clear()
                self._update()
            finally:
                self._running.release()

    def _update(self) -> None:
        try:
            report = index_sync.update_from_catalog(self.cfg, embedder=self.embedder())
        except Exception as exc:  # the change stands; the next update (here or `index update`) retries
            log.exception("index update after a portal change failed")
            self.audit.record(
                actor="portal",
                action="index_update",
                outcome="error",
                detail={"error": f"{type(exc).__name__}: {exc}"},
            )
            return
        self.audit.record(
            actor="portal",
            action="index_update",
            outcome="incomplete" if report.failed else "ok",
            detail={"report": report.format()},
        )


class BrandPortal:
    """The portal's operations over one workspace: tokens, uploads, listings, withdrawals, the review queue."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.settings = PortalSettings.from_config(require(cfg, "portal"))
        self.workspace = Workspace.from_config(cfg).ensure()
        self.catalog = Catalog.open(self.workspace)
        self.store = ImageStore(self.workspace.image_store)
        self.tokens = TokenStore(self.catalog)
        self.sessions = SessionStore(self.catalog, self.settings.session_max_age_s)
        self.audit = AuditLog(self.catalog)
        base = IngestSettings.from_config(cfg, approve=False)
        self.limits = DecodeLimits(
            max_pixels=min(base.limits.max_pixels, self.settings.max_pixels),
            max_bytes=min(base.limits.max_bytes, self.settings.max_file_bytes),
            max_side=base.limits.max_side,
        )
        self.ingest_settings = replace(base, limits=self.limits)
        self.checker = ReferenceChecker(cfg, self.catalog, self.settings.checks)
        self.indexer = IndexUpdater(cfg, self.audit, self.checker.embedder)
        self.inbox = BrandInbox(self.catalog, self.audit, self.limits, self.settings.thumbnail_side)

    def close(self) -> None:
        self.catalog.close()

    # -- authentication ---------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal:
        principal = self.tokens.verify(token)
        if principal is None:
            raise Unauthenticated("missing, invalid or revoked token")
        return principal

    def start_session(self, principal: Principal) -> str:
        """A browser session for a verified token, its audit row in the same transaction."""
        with self.catalog.write():
            session_id = self.sessions.start(principal)
            self.audit.record(actor=principal.actor, brand=principal.brand, action="signin", outcome="ok")
        return session_id

    def end_session(self, principal: Principal, session_id: str) -> None:
        """Sign-out ends the session on the server, so a copy of its cookie signs nobody in."""
        with self.catalog.write():
            self.sessions.end(session_id)
            self.audit.record(actor=principal.actor, brand=principal.brand, action="signout", outcome="ok")

    def refuse(self, principal: Principal | None, action: str, error: PortalError, target=None) -> None:
        """Record a refused request in the audit log."""
        self.audit.record(
            actor=principal.actor if principal else "anonymous",
            brand=principal.brand if principal else None,
            action=action,
            target=target,
            outcome=f"refused {error.status_code}",
            detail={"reason": str(error)},
        )

    @staticmethod
    def require_admin(principal: Principal) -> None:
        if not principal.is_admin:
            raise Forbidden("admin only: this token belongs to a brand")

    # -- reading ----------------------------------------------------------------------------------

    def reference(self, principal: Principal, ref_id: int) -> Reference:
        """The reference if the caller may see it; another brand's reference is 'not found'."""
        found = self.catalog.get_many([ref_id]).get(ref_id)
        if found is None or not (principal.is_admin or found.brand == principal.brand):
            raise NotFound(f"no reference {ref_id}")
        return found

    def references(
        self,
        principal: Principal,
        status: str | None = None,
        view: str | None = None,
        brand: str | None = None,
    ) -> list[Reference]:
        """The caller's brand's references (an admin: every brand's, or `brand`'s), newest first."""
        if status is not None and status not in STATUSES:
            raise Unprocessable(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
        if view is not None and view not in VIEWS:
            raise Unprocessable(f"unknown view {view!r} (one of {', '.join(VIEWS)})")
        if not principal.is_admin:
            if brand is not None and brand != principal.brand:
                raise Forbidden(f"this token reads brand {principal.brand!r} only")
            brand = principal.brand
        return self.catalog.list_references(brand=brand, status=status, view=view)[::-1]

    def reference_page(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        brand: str | None = None,
        search: str = "",
        page: int = 1,
    ) -> ListPage:
        """Page `page` (portal.page_size per page; clamped to the pages there are) of `references`, narrowed
        by `search`: a reference id (`12` or `#12`), or part of a product or file name, in any case."""
        found = self.references(principal, status=status, brand=brand)
        needle = search.strip().casefold()
        if needle:
            found = [
                r
                for r in found
                if needle.removeprefix("#") == str(r.id)
                or needle in r.product.casefold()
                or needle in (r.source_name or "").casefold()
            ]
        return ListPage.of(found, page, self.settings.page_size)

    def brands(self, principal: Principal) -> list[str]:
        """The brands an admin can filter the references list by."""
        self.require_admin(principal)
        return self.catalog.brands()

    def products(self, principal: Principal) -> list[str]:
        """The caller's brand's products so far, by name (what the upload form offers to pick from)."""
        if principal.brand is None:
            return []
        return sorted(
            {r.product for r in self.catalog.list_references(brand=principal.brand)}, key=str.casefold
        )

    def resolve_product(self, principal: Principal, typed: str) -> str:
        """The existing product that a typed name means, else the name itself (a new product).

        Names are compared as slugs, with and without the brand's slug in front, because product ids are
        `<brand slug>-<product slug>`: "Body Lotion" of Kalvessa is `kalvessa-body-lotion`. An exact slug
        match wins over one found by dropping the prefix.
        """
        typed = (typed or "").strip()
        if not slugify(typed) or principal.brand is None:
            return typed
        prefix = slugify(principal.brand) + "-"
        existing = self.products(principal)
        for key in (slugify, lambda name: slugify(name).removeprefix(prefix)):
            for product in existing:
                if key(product) == key(typed):
                    return product
        return typed

    def thumbnail(self, principal: Principal, ref_id: int) -> bytes:
        """A small JPEG of the reference's stored photo."""
        reference = self.reference(principal, ref_id)
        return small_jpeg(
            self.store.path_of(reference.stored_path),
            self.limits,
            self.settings.thumbnail_side,
            f"reference {ref_id}: stored photo",
        )

    def pending(self, principal: Principal) -> list[PendingItem]:
        """The review queue, oldest first, each item with its submission checks."""
        self.require_admin(principal)
        references = self.catalog.list_references(status="pending")
        found = checks_for(self.catalog, [reference.id for reference in references])
        return [PendingItem(reference, tuple(found[reference.id])) for reference in references]

    def audit_entries(
        self, principal: Principal, brand: str | None, action: str | None, limit: int
    ) -> list[AuditEntry]:
        self.require_admin(principal)
        return self.audit.entries(brand=brand, action=action, limit=limit)

    # -- uploads ----------------------------------------------------------------------------------

    def admit_upload(self, principal: Principal, files: Sequence[tuple[str | None, int]]) -> None:
        """Refuse an upload before any file is read: admins (403), no files (422), count and bytes (413)."""
        if principal.is_admin:
            raise Forbidden("uploads belong to a brand: sign in with that brand's token")
        settings = self.settings
        if not files:
            raise Unprocessable("no files in the upload")
        if len(files) > settings.max_files:
            raise TooLarge(f"{len(files)} files in one upload; the limit is {settings.max_files}")
        for number, (filename, size) in enumerate(files, start=1):
            if size > settings.max_file_bytes:
                label = safe_source_name(filename) or f"file {number}"
                raise TooLarge(f"{label}: {size} bytes; the limit is {settings.max_file_bytes} per file")

    def check_pixels(self, files: Sequence[UploadedFile]) -> None:
        """Refuse the whole upload (422) when any photo declares more pixels than allowed, before storing any."""
        limits = replace(
            self.limits, max_pixels=self.settings.max_pixels, max_bytes=self.settings.max_file_bytes
        )
        for number, upload in enumerate(files, start=1):
            label = safe_source_name(upload.filename) or f"file {number}"
            try:
                open_image(upload.data, label, limits)
            except ImageDecodeError as exc:
                if exc.reason == "decompression_bomb":
                    raise Unprocessable(
                        f"{label}: too many pixels ({exc.detail}); the limit is {self.settings.max_pixels}"
                    ) from None
                # anything else wrong with the file is reported by ingest, for that file only

    def upload(
        self, principal: Principal, files: Sequence[UploadedFile], product: str, view: str
    ) -> list[IngestOutcome]:
        """Ingest photos of one product and view for the caller's brand; one outcome per file, in order.

        The photos go through the same validation and dedupe as `brandsentry refs add` and start pending;
        accepted ones get their quality checks for the admin. A product name that means an existing product
        (`resolve_product`) is filed under it rather than starting a second one.
        """
        self.admit_upload(principal, [(upload.filename, len(upload.data)) for upload in files])
        self.check_pixels(files)
        product = self.resolve_product(principal, product)
        outcomes = []
        for upload in files:
            outcome = guarded_ingest(
                self.catalog,
                self.store,
                upload.data,
                brand=principal.brand,
                product=product,
                view=view,
                submitted_by=principal.actor,
                source_name=safe_source_name(upload.filename) or "upload",
                **self.ingest_settings.as_kwargs(),
            )
            outcome = self._redact(principal, outcome)
            self.audit.record(
                actor=principal.actor,
                brand=principal.brand,
                action="upload",
                target=outcome.reference_id or outcome.duplicate_of,
                outcome=outcome.status,
                detail={"file": outcome.source, "reason": outcome.reason, "product": product, "view": view},
            )
            outcomes.append(outcome)
        accepted = [o for o in outcomes if o.status == "accepted"]
        if accepted:
            self._run_checks(accepted)
        return outcomes

    def _redact(self, principal: Principal, outcome: IngestOutcome) -> IngestOutcome:
        """A duplicate of another brand's photo must not reveal that brand or its reference id."""
        if outcome.duplicate_of is None:
            return outcome
        held = self.catalog.get_many([outcome.duplicate_of]).get(outcome.duplicate_of)
        if held is not None and held.brand == principal.brand:
            return outcome
        return replace(outcome, duplicate_of=None, detail="the catalog already holds this photo")

    def _run_checks(self, accepted: Sequence[IngestOutcome]) -> None:
        """Quality checks for the admin; a check that breaks leaves a note instead of failing the upload."""
        references = list(self.catalog.get_many([o.reference_id for o in accepted]).values())
        found: dict[int, list[CheckResult]] = {
            o.reference_id: [CheckResult(w.split(":")[0], "warning", w) for w in o.warnings] for o in accepted
        }
        try:
            results = self.checker.run(references)
        except Exception as exc:  # batch edge: the photos are stored; the admin sees why checks are missing
            log.exception("submission checks failed")
            results = {
                r.id: [CheckResult("checks_failed", "note", f"checks failed: {type(exc).__name__}: {exc}")]
                for r in references
            }
        for ref_id, extra in results.items():
            found[ref_id].extend(extra)
        record_checks(self.catalog, found)

    # -- status changes ---------------------------------------------------------------------------

    def _change(
        self, principal: Principal, ref_id: int, action: str, status: str, expected, reason: str | None
    ) -> Reference:
        with self.catalog.write():
            reference = self.reference(principal, ref_id)
            try:
                changed = self.catalog.set_status([ref_id], status, reason=reason, expected=expected)[0]
            except CatalogError as exc:
                raise Conflict(str(exc)) from None
            self.audit.record(
                actor=principal.actor,
                brand=reference.brand,
                action=action,
                target=ref_id,
                outcome="ok",
                detail={"from": reference.status, "to": status, "reason": reason},
            )
        return changed

    def withdraw(self, principal: Principal, ref_id: int, reason: str | None = None) -> Reference:
        """Withdraw a reference (own brand; an admin any); it leaves the index at the next update."""
        reason = (reason or "").strip() or None
        return self._change(
            principal,
            ref_id,
            "withdraw",
            "withdrawn",
            expected=("pending", "approved", "indexed"),
            reason=f"withdrawn by {principal.actor}" + (f": {reason}" if reason else ""),
        )

    def restore(self, principal: Principal, ref_id: int) -> Reference:
        """Undo a withdrawal (or a rejection). Withdrawn is final in the catalog's life cycle, so the stored
        photo is submitted again as a new pending reference (a new id) that goes through the duplicate
        checks, the submission checks and an admin's review once more, just as a re-upload would."""
        with self.catalog.write():
            withdrawn = self.reference(principal, ref_id)
            if withdrawn.status != "withdrawn":
                raise Conflict(
                    f"reference {ref_id} is {withdrawn.status!r}; only a withdrawn one can be restored"
                )
            outcome = ingest_reference(
                self.catalog,
                self.store,
                self.store.path_of(withdrawn.stored_path),
                brand=withdrawn.brand,
                product=withdrawn.product,
                view=withdrawn.view,
                submitted_by=principal.actor,
                source_name=withdrawn.source_name or f"reference-{ref_id}",
                **self.ingest_settings.as_kwargs(),
            )
            outcome = self._redact(principal, outcome)
            if outcome.status == "duplicate":
                raise Conflict(f"reference {ref_id} cannot be restored: {outcome.detail}")
            if outcome.status == "rejected":
                raise Unprocessable(
                    f"reference {ref_id} cannot be restored: {outcome.reason} {outcome.detail}"
                )
            self.audit.record(
                actor=principal.actor,
                brand=withdrawn.brand,
                action="restore",
                target=outcome.reference_id,
                outcome="ok",
                detail={"restored_from": ref_id},
            )
        self._run_checks([outcome])
        return self.catalog.get(outcome.reference_id)

    def approve(self, principal: Principal, ref_id: int) -> Reference:
        self.require_admin(principal)
        return self._change(
            principal,
            ref_id,
            "approve",
            "approved",
            expected="pending",
            reason=f"approved by {principal.actor}",
        )

    def reject(self, principal: Principal, ref_id: int, reason: str | None = None) -> Reference:
        self.require_admin(principal)
        reason = (reason or "").strip()
        return self._change(
            principal,
            ref_id,
            "reject",
            "withdrawn",
            expected="pending",
            reason=f"rejected by {principal.actor}" + (f": {reason}" if reason else ""),
        )
