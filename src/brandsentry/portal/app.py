"""The brand portal's web app: server-rendered pages (`web`: signed session cookie + CSRF token) and a JSON
API (`api`: bearer token), both thin over `BrandPortal`. This module assembles them; the routes find the
portal and the session signer on `app.state` (`deps`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from brandsentry.portal import api, web
from brandsentry.portal.auth import SessionSigner, load_or_create_secret
from brandsentry.portal.deps import SESSION_COOKIE, WebSession
from brandsentry.portal.service import BrandPortal, PortalError

__all__ = ["SESSION_COOKIE", "create_app"]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
# Pages load nothing from elsewhere; FastAPI's /docs page is left alone (it loads Swagger UI from a CDN).
PAGE_CSP = "default-src 'self'; img-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'"


@asynccontextmanager
async def lifespan(app: FastAPI):
    """The portal's catalog is closed when the server stops."""
    yield
    app.state.portal.close()


async def security_headers(request: Request, call_next) -> Response:
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    if not request.url.path.startswith(("/docs", "/redoc")):
        response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


async def portal_error(request: Request, error: PortalError) -> Response:
    """Every refusal is audited, then answered as JSON under /api/ and as the error page elsewhere."""
    principal = getattr(request.state, "principal", None)
    route = request.scope.get("route")
    action = getattr(route, "name", None) or request.url.path
    await run_in_threadpool(
        request.app.state.portal.refuse, principal, action, error, request.path_params.get("ref_id")
    )
    if request.url.path.startswith("/api/"):
        headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
        return JSONResponse({"detail": str(error)}, status_code=error.status_code, headers=headers)
    session = getattr(request.state, "session", None) or WebSession.signed_out()
    return web.render(
        request,
        session,
        "error.html",
        {"status": error.status_code, "message": str(error)},
        status_code=error.status_code,
    )


def create_app(cfg) -> FastAPI:
    """The portal app over the workspace of `cfg` (the `portal` group configures it); `app.state.portal`
    is its `BrandPortal`."""
    portal = BrandPortal(cfg)
    settings = portal.settings
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
    app.state.signer = SessionSigner(
        load_or_create_secret(portal.workspace.root / "portal" / "session_secret"), settings.session_max_age_s
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.middleware("http")(security_headers)
    app.add_exception_handler(PortalError, portal_error)
    app.include_router(api.router)
    app.include_router(web.router)
    return app
