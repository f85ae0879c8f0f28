"""The server-rendered pages: a signed cookie names a server-side session (which sign-out ends), and every
form post must carry its session's CSRF token (`Post`). Thin calls into `BrandPortal`, like the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, quote, urlencode

from fastapi import APIRouter, BackgroundTasks, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from brandsentry.alliance import AllianceSettings
from brandsentry.alliance.sellers import latest_sellers_page
from brandsentry.catalog import Reference
from brandsentry.portal.auth import Principal, new_csrf_token
from brandsentry.portal.deps import (
    SESSION_COOKIE,
    Page,
    Portal,
    Post,
    WebSession,
    jpeg_response,
    keep_index_current,
    read_uploads,
    signed_in,
    upload_outcome_status,
)
from brandsentry.portal.inbox import brand_report
from brandsentry.portal.service import BrandPortal, ListPage, NotFound, Unprocessable
from brandsentry.synth.brands import slugify

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)


def set_session_cookie(request: Request, response: Response, data: dict) -> None:
    settings = request.app.state.portal.settings
    response.set_cookie(
        SESSION_COOKIE,
        request.app.state.signer.dumps(data),
        max_age=settings.session_max_age_s,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def render(
    request: Request, session: WebSession, name: str, context: dict | None = None, status_code: int = 200
) -> HTMLResponse:
    """A page with the session's principal and CSRF token; a fresh session's cookie is set with it."""
    response = templates.TemplateResponse(
        request,
        name,
        {"principal": session.principal, "csrf_token": session.csrf, **(context or {})},
        status_code=status_code,
    )
    if session.fresh:
        set_session_cookie(request, response, session.data)
    return response


def upload_form(portal: BrandPortal, principal: Principal) -> dict:
    """What the upload page shows besides a submission's outcomes: the brand's products and the views to
    pick, and the limits."""
    return {
        "products": portal.products(principal),
        "views": list(portal.ingest_settings.views),
        "limits": portal.settings,
    }


def notice_about(portal: BrandPortal, principal: Principal, ref_id: int | None) -> Reference | None:
    """The reference a notice after a withdrawal or a restore names, if the caller may see it."""
    if ref_id is None:
        return None
    try:
        return portal.reference(principal, ref_id)
    except NotFound:  # a guessed id in the query string shows no notice
        return None


@router.get("/")
def home(session: Page) -> RedirectResponse:
    return RedirectResponse("/references" if session.principal else "/signin", status_code=303)


@router.get("/signin")
def signin_page(request: Request, session: Page) -> HTMLResponse:
    return render(request, session, "signin.html")


@router.post("/signin")
def signin(request: Request, session: Post, portal: Portal, token: Annotated[str, Form()] = "") -> Response:
    principal = portal.tokens.verify(token)
    if principal is None:
        portal.audit.record(
            actor="anonymous", action="signin", outcome="refused 401", detail={"reason": "invalid token"}
        )
        return render(
            request,
            session,
            "signin.html",
            {"error": "That token is not valid (or was revoked)."},
            status_code=401,
        )
    session_id = portal.start_session(principal)
    response = RedirectResponse("/admin/pending" if principal.is_admin else "/references", status_code=303)
    set_session_cookie(request, response, {"sid": session_id, "csrf": new_csrf_token()})  # rotate
    return response


@router.post("/signout")
def signout(request: Request, session: Post, portal: Portal) -> Response:
    if session.principal:
        portal.end_session(session.principal, session.data["sid"])
    response = RedirectResponse("/signin", status_code=303)
    set_session_cookie(request, response, WebSession.signed_out().data)
    return response


@router.get("/references")
def references_page(
    request: Request,
    session: Page,
    portal: Portal,
    status: str = "",
    brand: str = "",
    q: str = "",
    page: int = 1,
    withdrawn: int | None = None,
    restored: int | None = None,
) -> Response:
    if session.principal is None:
        return RedirectResponse("/signin", status_code=303)
    principal = session.principal
    listing = portal.reference_page(
        principal, status=status or None, brand=brand or None, search=q, page=page
    )
    filters = {name: value for name, value in (("status", status), ("brand", brand), ("q", q)) if value}
    context = {
        "listing": listing,
        "filters": filters,
        "status": status,
        "brand": brand,
        "q": q,
        "brands": portal.brands(principal) if principal.is_admin else [],
        "withdrawn": notice_about(portal, principal, withdrawn),
        "restored": notice_about(portal, principal, restored),
    }
    return render(request, session, "references.html", context)


@router.get("/upload")
def upload_page(request: Request, session: Page, portal: Portal) -> Response:
    if session.principal is None:
        return RedirectResponse("/signin", status_code=303)
    return render(request, session, "upload.html", upload_form(portal, session.principal))


@router.post("/upload")
def upload(
    request: Request,
    session: Post,
    portal: Portal,
    files: Annotated[list[UploadFile], File()],
    product: Annotated[str, Form()] = "",
    new_product: Annotated[str, Form()] = "",
    view: Annotated[str, Form()] = "product",
) -> HTMLResponse:
    """`product` is the picked product ("" = a new one, named by `new_product`)."""
    principal = signed_in(session)
    if product.strip() and new_product.strip():
        raise Unprocessable(
            f"pick product {product!r} or type the new product {new_product!r}, not both "
            '(choose "New product…" to type one)'
        )
    outcomes = portal.upload(
        principal, read_uploads(portal, principal, files), product.strip() or new_product, view
    )
    filed_under = portal.resolve_product(principal, product.strip() or new_product)
    return render(
        request,
        session,
        "upload.html",
        {**upload_form(portal, principal), "outcomes": outcomes, "product": filed_under, "view": view},
        status_code=upload_outcome_status(outcomes),
    )


@router.get("/references/{ref_id}/withdraw")
def withdraw_page(request: Request, session: Page, portal: Portal, ref_id: int) -> Response:
    """The confirmation step before a withdrawal: what goes, and what Restore can and cannot bring back."""
    reference = portal.reference(signed_in(session), ref_id)
    return render(request, session, "withdraw.html", {"ref": reference})


@router.post("/references/{ref_id}/withdraw")
def withdraw(
    session: Post,
    portal: Portal,
    ref_id: int,
    background: BackgroundTasks,
    reason: Annotated[str, Form()] = "",
) -> RedirectResponse:
    keep_index_current(portal, background, portal.withdraw(signed_in(session), ref_id, reason))
    return RedirectResponse(f"/references?withdrawn={ref_id}", status_code=303)


@router.post("/references/{ref_id}/restore")
def restore(session: Post, portal: Portal, ref_id: int) -> RedirectResponse:
    restored = portal.restore(signed_in(session), ref_id)
    return RedirectResponse(f"/references?restored={restored.id}", status_code=303)


@router.get("/thumbnails/{ref_id}")
def thumbnail(session: Page, portal: Portal, ref_id: int) -> Response:
    return jpeg_response(portal.thumbnail(signed_in(session), ref_id))


# Reports are self-contained files (inline style, plots as data: images) that load and run nothing.
REPORT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'"


@router.get("/reports/{period}")
def report_download(session: Page, portal: Portal, period: str) -> Response:
    """The brand's transparency report of a month: a self-contained HTML page, shown in the browser, saved
    under its own name by the inbox's download links."""
    if session.principal is None:
        return RedirectResponse("/signin", status_code=303)
    report, page = brand_report(portal.workspace, session.principal, period)
    name = f"transparency-{period}-{slugify(report['brand'])}.html"
    headers = {"Content-Disposition": f'inline; filename="{name}"', "Content-Security-Policy": REPORT_CSP}
    return HTMLResponse(page, headers=headers)


@router.get("/inbox")
def inbox_page(
    request: Request,
    session: Page,
    portal: Portal,
    run: str = "",
    decision: str = "",
    product: str = "",
    page: int = 1,
    answered: str = "",
) -> Response:
    """`portal.page_size` listings per page; `answered` names the listing whose answer the notice shows."""
    if session.principal is None:
        return RedirectResponse("/signin", status_code=303)
    filters = {"run": run, "decision": decision, "product": product}
    inbox = portal.inbox.listings(session.principal, **{k: v or None for k, v in filters.items()})
    context = {
        "inbox": inbox,
        "listing": ListPage.of(inbox.items, page, portal.settings.page_size),
        "filters": {k: v for k, v in filters.items() if v},
        **filters,
        "answered": next((i for i in inbox.items if i.listing_id == answered and i.answer), None),
        "report_months": sorted({i.scored_at[:7] for i in inbox.items}, reverse=True),
    }
    return render(request, session, "inbox.html", context)


@router.post("/inbox/{listing_id}/answer")
def answer(
    session: Post,
    portal: Portal,
    listing_id: str,
    answer: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    run: Annotated[str, Form()] = "",
    back: Annotated[str, Form(description="the inbox filters to return to, as a query string")] = "",
) -> RedirectResponse:
    portal.inbox.answer(signed_in(session), listing_id, answer, note, run or None)
    kept = [(key, value) for key, value in parse_qsl(back) if key in ("run", "decision", "product", "page")]
    query = urlencode([*kept, ("answered", listing_id)])
    return RedirectResponse(f"/inbox?{query}#listing-{quote(listing_id, safe='')}", status_code=303)


@router.get("/inbox/{listing_id}/thumbnail")
def listing_thumbnail(session: Page, portal: Portal, listing_id: str) -> Response:
    return jpeg_response(portal.inbox.thumbnail(signed_in(session), listing_id))


@router.get("/inbox/{listing_id}/evidence")
def listing_evidence(session: Page, portal: Portal, listing_id: str, run: str = "") -> Response:
    return jpeg_response(portal.inbox.evidence(signed_in(session), listing_id, run or None))


@router.get("/admin/pending")
def pending_page(request: Request, session: Page, portal: Portal) -> Response:
    if session.principal is None:
        return RedirectResponse("/signin", status_code=303)
    return render(request, session, "pending.html", {"items": portal.pending(session.principal)})


@router.get("/admin/sellers")
def sellers_page(session: Page, portal: Portal) -> Response:
    """The latest `brandsentry sellers report` as it was written; admins only: it names every brand's sellers."""
    if session.principal is None:
        return RedirectResponse("/signin", status_code=303)
    portal.require_admin(session.principal)
    page = latest_sellers_page(AllianceSettings.from_config(portal.cfg))
    if page is None:
        raise NotFound("no sellers report yet: run `brandsentry sellers report` on the workspace")
    return HTMLResponse(page.read_text(encoding="utf-8"), headers={"Content-Security-Policy": REPORT_CSP})


@router.post("/admin/pending/{ref_id}/approve")
def approve(session: Post, portal: Portal, ref_id: int, background: BackgroundTasks) -> RedirectResponse:
    keep_index_current(portal, background, portal.approve(signed_in(session), ref_id))
    return RedirectResponse("/admin/pending", status_code=303)


@router.post("/admin/pending/{ref_id}/reject")
def reject(
    session: Post, portal: Portal, ref_id: int, reason: Annotated[str, Form()] = ""
) -> RedirectResponse:
    portal.reject(signed_in(session), ref_id, reason)
    return RedirectResponse("/admin/pending", status_code=303)
