"""The brand portal's web layer: server-rendered pages (signed session cookie + CSRF token) and a JSON API
(bearer token), both thin over `BrandPortal`. FastAPI documents the API at /docs and /openapi.json.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import BackgroundTasks, Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from brandsentry.catalog import Reference
from brandsentry.ingest import IngestOutcome
from brandsentry.portal.auth import (
    Principal,
    SessionSigner,
    csrf_matches,
    load_or_create_secret,
    new_csrf_token,
)
from brandsentry.portal.checks import CheckResult
from brandsentry.portal.service import (
    BrandPortal,
    Forbidden,
    PendingItem,
    PortalError,
    Unauthenticated,
    UploadedFile,
)

HERE = Path(__file__).parent
SESSION_COOKIE = "brandsentry_session"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Pages load nothing from elsewhere; FastAPI's /docs page is left alone (it loads Swagger UI from a CDN).
PAGE_CSP = "default-src 'self'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"


# -- API models -----------------------------------------------------------------------------------


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


class AuditOut(BaseModel):
    id: int
    at: str
    actor: str
    brand: str | None
    action: str
    target: str | None
    outcome: str
    detail: dict


# -- sessions ---------------------------------------------------------------------------------------


@dataclass
class WebSession:
    """The browser's session: `data` = {"key": token key id or None, "csrf": token}; `fresh` = cookie to set."""

    data: dict
    principal: Principal | None
    fresh: bool

    @property
    def csrf(self) -> str:
        return self.data["csrf"]


# -- dependencies (module level so that FastAPI can resolve their annotations) ----------------------

bearer = HTTPBearer(auto_error=False, description="a portal token from `brandsentry tokens create`")


def api_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal:
    principal = request.app.state.portal.authenticate(credentials.credentials if credentials else None)
    request.state.principal = principal
    return principal


def web_session(request: Request) -> WebSession:
    """The browser's session from its signed cookie; a missing, forged or expired cookie starts a fresh one."""
    portal: BrandPortal = request.app.state.portal
    data = request.app.state.signer.loads(request.cookies.get(SESSION_COOKIE))
    fresh = not (isinstance(data, dict) and isinstance(data.get("csrf"), str))
    if fresh:
        data = {"key": None, "csrf": new_csrf_token()}
    principal = portal.tokens.principal(data["key"]) if data.get("key") else None
    if data.get("key") and principal is None:  # token revoked since sign-in: the session ends
        data, fresh = {"key": None, "csrf": new_csrf_token()}, True
    session = WebSession(data, principal, fresh)
    request.state.session = session
    request.state.principal = principal
    return session


def form_session(
    session: Annotated[WebSession, Depends(web_session)], csrf_token: Annotated[str, Form()] = ""
) -> WebSession:
    """A form post: the CSRF token must match the session's before anything else happens."""
    if session.fresh or not csrf_matches(session.csrf, csrf_token):
        raise Forbidden("the form's CSRF token is missing or does not match this session; reload the page")
    return session


def signed_in(session: WebSession) -> Principal:
    if session.principal is None:
        raise Unauthenticated("sign in first")
    return session.principal


API = Annotated[Principal, Depends(api_principal)]
Page = Annotated[WebSession, Depends(web_session)]
Post = Annotated[WebSession, Depends(form_session)]


def upload_outcome_status(outcomes: list[IngestOutcome]) -> int:
    """201 when something new was stored, 422 when every file was rejected, else 200 (all already held)."""
    if any(o.status == "accepted" for o in outcomes):
        return 201
    return 422 if all(o.status == "rejected" for o in outcomes) else 200


def create_app(cfg) -> FastAPI:
    """The portal app over the workspace of `cfg` (the `portal` group configures it); `app.state.portal`
    is its `BrandPortal`."""
    portal = BrandPortal(cfg)
    settings = portal.settings
    signer = SessionSigner(
        load_or_create_secret(portal.workspace.root / "portal" / "session_secret"), settings.session_max_age_s
    )
    templates = Jinja2Templates(directory=HERE / "templates")
    views = list(portal.ingest_settings.views)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        portal.close()

    app = FastAPI(
        title="brandsentry brand portal",
        description="Brand representatives submit, list and withdraw reference photos of their own brand; "
        "admins review the pending queue. Authenticate with `Authorization: Bearer <token>` "
        "(`brandsentry tokens create`).",
        version="1",
        lifespan=lifespan,
        max_body_size=settings.max_request_bytes,
    )
    app.state.portal = portal
    app.state.signer = signer
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        if not request.url.path.startswith(("/docs", "/redoc")):
            response.headers["Content-Security-Policy"] = PAGE_CSP
        return response

    def set_session_cookie(response: Response, data: dict) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            signer.dumps(data),
            max_age=settings.session_max_age_s,
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            path="/",
        )

    def render(
        request: Request, session: WebSession, name: str, context: dict | None = None, status_code: int = 200
    ) -> HTMLResponse:
        response = templates.TemplateResponse(
            request,
            name,
            {"principal": session.principal, "csrf_token": session.csrf, **(context or {})},
            status_code=status_code,
        )
        if session.fresh:
            set_session_cookie(response, session.data)
        return response

    @app.exception_handler(PortalError)
    async def portal_error(request: Request, error: PortalError):
        principal = getattr(request.state, "principal", None)
        route = request.scope.get("route")
        action = getattr(route, "name", None) or request.url.path
        await run_in_threadpool(portal.refuse, principal, action, error, request.path_params.get("ref_id"))
        if request.url.path.startswith("/api/"):
            headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
            return JSONResponse({"detail": str(error)}, status_code=error.status_code, headers=headers)
        session = getattr(request.state, "session", None) or WebSession(
            {"key": None, "csrf": new_csrf_token()}, None, True
        )
        return render(
            request,
            session,
            "error.html",
            {"status": error.status_code, "message": str(error)},
            status_code=error.status_code,
        )

    def keep_index_current(background: BackgroundTasks, changed: Reference) -> None:
        """After the response: add an approved reference to the index, or take a withdrawn one out of it."""
        if settings.update_index and (changed.status == "approved" or changed.in_index):
            background.add_task(portal.indexer.request)

    def read_uploads(principal: Principal, files: list[UploadFile]) -> list[UploadedFile]:
        """Limits are checked on the sizes the parser saw before any file is read into memory."""
        files = [f for f in files if f.filename or f.size]  # a browser sends an empty part for "no file"
        portal.admit_upload(principal, [(f.filename, f.size or 0) for f in files])
        return [UploadedFile(f.filename, f.file.read()) for f in files]

    # -- JSON API ---------------------------------------------------------------------------------

    @app.get("/api/v1/me", response_model=MeOut, tags=["api"])
    def api_me(principal: API) -> MeOut:
        """Who this token is."""
        return MeOut(key_id=principal.key_id, name=principal.name, role=principal.role, brand=principal.brand)

    @app.get("/api/v1/references", response_model=list[ReferenceOut], tags=["api"])
    def api_references(
        principal: API,
        status: Annotated[str | None, Query(description="pending, approved, indexed or withdrawn")] = None,
        view: Annotated[str | None, Query(description="product, logo or packaging")] = None,
        brand: Annotated[
            str | None, Query(description="admins: one brand (brand tokens: their own only)")
        ] = None,
    ) -> list[ReferenceOut]:
        """The token's brand's references, newest first."""
        return [
            ReferenceOut.of(r) for r in portal.references(principal, status=status, view=view, brand=brand)
        ]

    @app.post(
        "/api/v1/references",
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
        files: Annotated[list[UploadFile], File(description="one or more photos")],
        product: Annotated[str, Form()],
        view: Annotated[str, Form(description="product, logo or packaging")] = "product",
    ) -> JSONResponse:
        """Submit photos of one product and view; they start pending until an admin approves them."""
        outcomes = portal.upload(principal, read_uploads(principal, files), product, view)
        body = UploadOut(
            accepted=sum(o.status == "accepted" for o in outcomes),
            duplicate=sum(o.status == "duplicate" for o in outcomes),
            rejected=sum(o.status == "rejected" for o in outcomes),
            outcomes=[OutcomeOut.of(o) for o in outcomes],
        )
        return JSONResponse(body.model_dump(), status_code=upload_outcome_status(outcomes))

    @app.get("/api/v1/references/{ref_id}", response_model=ReferenceOut, tags=["api"])
    def api_reference(principal: API, ref_id: int) -> ReferenceOut:
        return ReferenceOut.of(portal.reference(principal, ref_id))

    @app.get(
        "/api/v1/references/{ref_id}/thumbnail",
        response_class=Response,
        tags=["api"],
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def api_thumbnail(principal: API, ref_id: int) -> Response:
        return Response(
            portal.thumbnail(principal, ref_id),
            media_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.post("/api/v1/references/{ref_id}/withdraw", response_model=ReferenceOut, tags=["api"])
    def api_withdraw(
        principal: API, ref_id: int, background: BackgroundTasks, body: ReasonIn | None = None
    ) -> ReferenceOut:
        """Withdraw a reference; it leaves the index right after (portal.update_index) or at the next update."""
        withdrawn = portal.withdraw(principal, ref_id, body.reason if body else None)
        keep_index_current(background, withdrawn)
        return ReferenceOut.of(withdrawn)

    @app.get("/api/v1/admin/pending", response_model=list[PendingOut], tags=["admin"])
    def api_pending(principal: API) -> list[PendingOut]:
        """The review queue, oldest first, with each submission's quality warnings."""
        return [PendingOut.of(item) for item in portal.pending(principal)]

    @app.post("/api/v1/admin/references/{ref_id}/approve", response_model=ReferenceOut, tags=["admin"])
    def api_approve(principal: API, ref_id: int, background: BackgroundTasks) -> ReferenceOut:
        """Approve a pending reference; the index picks it up right after (portal.update_index)."""
        approved = portal.approve(principal, ref_id)
        keep_index_current(background, approved)
        return ReferenceOut.of(approved)

    @app.post("/api/v1/admin/references/{ref_id}/reject", response_model=ReferenceOut, tags=["admin"])
    def api_reject(principal: API, ref_id: int, body: ReasonIn | None = None) -> ReferenceOut:
        return ReferenceOut.of(portal.reject(principal, ref_id, body.reason if body else None))

    @app.get("/api/v1/admin/audit", response_model=list[AuditOut], tags=["admin"])
    def api_audit(
        principal: API,
        brand: str | None = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> list[AuditOut]:
        """The most recent audit-log entries first."""
        return [AuditOut(**vars(e)) for e in portal.audit_entries(principal, brand, action, limit)]

    # -- pages ------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def home(session: Page) -> RedirectResponse:
        return RedirectResponse("/references" if session.principal else "/signin", status_code=303)

    @app.get("/signin", include_in_schema=False)
    def signin_page(request: Request, session: Page) -> HTMLResponse:
        return render(request, session, "signin.html")

    @app.post("/signin", include_in_schema=False)
    def signin(request: Request, session: Post, token: Annotated[str, Form()] = "") -> Response:
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
        portal.audit.record(actor=principal.actor, brand=principal.brand, action="signin", outcome="ok")
        response = RedirectResponse(
            "/admin/pending" if principal.is_admin else "/references", status_code=303
        )
        set_session_cookie(response, {"key": principal.key_id, "csrf": new_csrf_token()})  # rotate on sign-in
        return response

    @app.post("/signout", include_in_schema=False)
    def signout(session: Post) -> Response:
        if session.principal:
            portal.audit.record(
                actor=session.principal.actor, brand=session.principal.brand, action="signout", outcome="ok"
            )
        response = RedirectResponse("/signin", status_code=303)
        set_session_cookie(response, {"key": None, "csrf": new_csrf_token()})
        return response

    @app.get("/references", include_in_schema=False)
    def references_page(request: Request, session: Page, status: str | None = None) -> Response:
        if session.principal is None:
            return RedirectResponse("/signin", status_code=303)
        found = portal.references(session.principal, status=status or None)
        return render(request, session, "references.html", {"references": found, "status": status or ""})

    @app.get("/upload", include_in_schema=False)
    def upload_page(request: Request, session: Page) -> Response:
        if session.principal is None:
            return RedirectResponse("/signin", status_code=303)
        return render(request, session, "upload.html", {"views": views, "limits": settings})

    @app.post("/upload", include_in_schema=False)
    def upload(
        request: Request,
        session: Post,
        files: Annotated[list[UploadFile], File()],
        product: Annotated[str, Form()] = "",
        view: Annotated[str, Form()] = "product",
    ) -> HTMLResponse:
        principal = signed_in(session)
        outcomes = portal.upload(principal, read_uploads(principal, files), product, view)
        return render(
            request,
            session,
            "upload.html",
            {"views": views, "limits": settings, "outcomes": outcomes, "product": product, "view": view},
            status_code=upload_outcome_status(outcomes),
        )

    @app.post("/references/{ref_id}/withdraw", include_in_schema=False)
    def withdraw(
        session: Post, ref_id: int, background: BackgroundTasks, reason: Annotated[str, Form()] = ""
    ) -> RedirectResponse:
        keep_index_current(background, portal.withdraw(signed_in(session), ref_id, reason))
        return RedirectResponse("/references", status_code=303)

    @app.get("/thumbnails/{ref_id}", include_in_schema=False)
    def thumbnail(session: Page, ref_id: int) -> Response:
        return Response(
            portal.thumbnail(signed_in(session), ref_id),
            media_type="image/jpeg",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.get("/admin/pending", include_in_schema=False)
    def pending_page(request: Request, session: Page) -> Response:
        if session.principal is None:
            return RedirectResponse("/signin", status_code=303)
        return render(request, session, "pending.html", {"items": portal.pending(session.principal)})

    @app.post("/admin/pending/{ref_id}/approve", include_in_schema=False)
    def approve(session: Post, ref_id: int, background: BackgroundTasks) -> RedirectResponse:
        keep_index_current(background, portal.approve(signed_in(session), ref_id))
        return RedirectResponse("/admin/pending", status_code=303)

    @app.post("/admin/pending/{ref_id}/reject", include_in_schema=False)
    def reject(session: Post, ref_id: int, reason: Annotated[str, Form()] = "") -> RedirectResponse:
        portal.reject(signed_in(session), ref_id, reason)
        return RedirectResponse("/admin/pending", status_code=303)

    return app
