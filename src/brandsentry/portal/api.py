"""The JSON API under /api/v1: every call carries a bearer token and is a thin call into `BrandPortal`,
which enforces brand isolation. FastAPI documents it at /docs and /openapi.json."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, UploadFile
from fastapi.responses import JSONResponse, Response

from brandsentry.portal.auth import AuditEntry
from brandsentry.portal.deps import (
    API,
    Portal,
    jpeg_response,
    keep_index_current,
    read_uploads,
    upload_outcome_status,
)
from brandsentry.portal.inbox import brand_report
from brandsentry.portal.schemas import (
    AnswerIn,
    AnswerOut,
    InboxItemOut,
    MeOut,
    OutcomeOut,
    PendingOut,
    ReasonIn,
    ReferenceOut,
    UploadOut,
)

router = APIRouter(prefix="/api/v1")


@router.get("/me", response_model=MeOut, tags=["api"])
def api_me(principal: API) -> MeOut:
    """Who this token is."""
    return MeOut(key_id=principal.key_id, name=principal.name, role=principal.role, brand=principal.brand)


@router.get("/references", response_model=list[ReferenceOut], tags=["api"])
def api_references(
    principal: API,
    portal: Portal,
    status: Annotated[str | None, Query(description="pending, approved, indexed or withdrawn")] = None,
    view: Annotated[str | None, Query(description="product, logo or packaging")] = None,
    brand: Annotated[
        str | None, Query(description="admins: one brand (brand tokens: their own only)")
    ] = None,
) -> list[ReferenceOut]:
    """The token's brand's references, newest first."""
    return [ReferenceOut.of(r) for r in portal.references(principal, status=status, view=view, brand=brand)]


@router.post(
    "/references",
    response_model=UploadOut,
    status_code=201,
    tags=["api"],
    responses={
        200: {"description": "nothing new: every photo is already held"},
        413: {"description": "too many files, or a file too large"},
        422: {"description": "too many pixels, no files, or every photo rejected"},
    },
)
def api_upload(
    principal: API,
    portal: Portal,
    files: Annotated[list[UploadFile], File(description="one or more photos")],
    product: Annotated[str, Form()],
    view: Annotated[str, Form(description="product, logo or packaging")] = "product",
) -> JSONResponse:
    """Submit photos of one product and view; they start pending until an admin approves them. A product
    name that means one of the brand's products (same slug, with or without the brand's) is filed under it."""
    outcomes = portal.upload(principal, read_uploads(portal, principal, files), product, view)
    body = UploadOut(
        product=portal.resolve_product(principal, product),
        accepted=sum(o.status == "accepted" for o in outcomes),
        duplicate=sum(o.status == "duplicate" for o in outcomes),
        rejected=sum(o.status == "rejected" for o in outcomes),
        outcomes=[OutcomeOut.of(o) for o in outcomes],
    )
    return JSONResponse(body.model_dump(), status_code=upload_outcome_status(outcomes))


@router.get("/references/{ref_id}", response_model=ReferenceOut, tags=["api"])
def api_reference(principal: API, portal: Portal, ref_id: int) -> ReferenceOut:
    return ReferenceOut.of(portal.reference(principal, ref_id))


@router.get(
    "/references/{ref_id}/thumbnail",
    response_class=Response,
    tags=["api"],
    responses={200: {"content": {"image/jpeg": {}}}},
)
def api_thumbnail(principal: API, portal: Portal, ref_id: int) -> Response:
    return jpeg_response(portal.thumbnail(principal, ref_id))


@router.post("/references/{ref_id}/withdraw", response_model=ReferenceOut, tags=["api"])
def api_withdraw(
    principal: API, portal: Portal, ref_id: int, background: BackgroundTasks, body: ReasonIn | None = None
) -> ReferenceOut:
    """Withdraw a reference; it leaves the index right after (portal.update_index) or at the next update."""
    withdrawn = portal.withdraw(principal, ref_id, body.reason if body else None)
    keep_index_current(portal, background, withdrawn)
    return ReferenceOut.of(withdrawn)


@router.post(
    "/references/{ref_id}/restore",
    response_model=ReferenceOut,
    status_code=201,
    tags=["api"],
    responses={409: {"description": "not withdrawn, or its photo is held again already"}},
)
def api_restore(principal: API, portal: Portal, ref_id: int) -> ReferenceOut:
    """Undo a withdrawal: the same photo becomes a new pending reference (new id) that is reviewed again."""
    return ReferenceOut.of(portal.restore(principal, ref_id))


@router.get("/inbox", response_model=list[InboxItemOut], tags=["inbox"])
def api_inbox(
    principal: API,
    portal: Portal,
    run: Annotated[str | None, Query(description="one scoring run (its folder name)")] = None,
    decision: Annotated[str | None, Query(description="flag or review")] = None,
    product: Annotated[str | None, Query(description="one claimed product")] = None,
) -> list[InboxItemOut]:
    """The brand's flagged and review-queued listings, newest scoring first, with the brand's answers."""
    return [InboxItemOut.of(item) for item in portal.inbox.listings(principal, run, decision, product).items]


@router.post("/inbox/{listing_id}/answer", response_model=AnswerOut, tags=["inbox"])
def api_answer(principal: API, portal: Portal, listing_id: str, body: AnswerIn) -> AnswerOut:
    """Answer counterfeit, authentic or not_ours (not this brand's product); a new answer supersedes the
    brand's earlier one on the listing."""
    return AnswerOut.of(portal.inbox.answer(principal, listing_id, body.answer, body.note, body.run))


@router.get("/reports/{period}", tags=["inbox"])
def api_report(principal: API, portal: Portal, period: str) -> dict:
    """The brand's transparency report of a month (YYYY-MM): scanned, flagged, confirmed, disputed, flag
    precision and median hours to verdict of its own listings (`brandsentry report` for every brand)."""
    return brand_report(portal.workspace, principal, period)[0]


JPEG = {200: {"content": {"image/jpeg": {}}}}


@router.get("/inbox/{listing_id}/thumbnail", response_class=Response, tags=["inbox"], responses=JPEG)
def api_listing_thumbnail(principal: API, portal: Portal, listing_id: str) -> Response:
    return jpeg_response(portal.inbox.thumbnail(principal, listing_id))


@router.get("/inbox/{listing_id}/evidence", response_class=Response, tags=["inbox"], responses=JPEG)
def api_listing_evidence(principal: API, portal: Portal, listing_id: str, run: str | None = None) -> Response:
    return jpeg_response(portal.inbox.evidence(principal, listing_id, run))


@router.get("/admin/pending", response_model=list[PendingOut], tags=["admin"])
def api_pending(principal: API, portal: Portal) -> list[PendingOut]:
    """The review queue, oldest first, with each submission's quality warnings."""
    return [PendingOut.of(item) for item in portal.pending(principal)]


@router.post("/admin/references/{ref_id}/approve", response_model=ReferenceOut, tags=["admin"])
def api_approve(principal: API, portal: Portal, ref_id: int, background: BackgroundTasks) -> ReferenceOut:
    """Approve a pending reference; the index picks it up right after (portal.update_index)."""
    approved = portal.approve(principal, ref_id)
    keep_index_current(portal, background, approved)
    return ReferenceOut.of(approved)


@router.post("/admin/references/{ref_id}/reject", response_model=ReferenceOut, tags=["admin"])
def api_reject(principal: API, portal: Portal, ref_id: int, body: ReasonIn | None = None) -> ReferenceOut:
    return ReferenceOut.of(portal.reject(principal, ref_id, body.reason if body else None))


@router.get("/admin/audit", response_model=list[AuditEntry], tags=["admin"])
def api_audit(
    principal: API,
    portal: Portal,
    brand: str | None = None,
    action: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntry]:
    """The most recent audit-log entries first."""
    return portal.audit_entries(principal, brand, action, limit)
