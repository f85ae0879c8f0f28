"""The brand portal's web app: server-rendered pages (`web`: signed session cookie + CSRF token) and a JSON
API (`api`: bearer token), both thin over `BrandPortal`. This module assembles them; the routes find the
portal and the session signer on `app.state` (`deps`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler, request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from brandsentry.portal import api, web
from brandsentry.portal.auth import SessionSigner, load_or_create_secret
from brandsentry.portal.deps import SESSION_COOKIE, web_session
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
    if not request.url.path.startswith(("/docs", "/redoc")):  # a route may set a stricter one of its own
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    return response


async def portal_error(request: Request, error: PortalError) -> Response:
    """Every refusal is audited, then answered as JSON under /api/ and as the error page elsewhere."""
    principal = getattr(request.state, "principal", None)
    route = request.scope.get("route")
    action = getattr(route, "name", None) or request.url.path
    target = request.path_params.get("ref_id", request.path_params.get("listing_id"))
    await run_in_threadpool(request.app.state.portal.refuse, principal, action, error, target)
    if is_api(request):
        headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else None
        return JSONResponse({"detail": str(error)}, status_code=error.status_code, headers=headers)
    return await error_page(request, error.status_code, str(error))


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def error_page(request: Request, status_code: int, message: str) -> Response:
    """The HTML error page, in the caller's session (read from its cookie when no route dependency ran)."""
    session = getattr(request.state, "session", None) or await run_in_threadpool(
        web_session, request, request.app.state.portal
    )
    return web.render(
        request, session, "error.html", {"status": status_code, "message": message}, status_code=status_code
    )


async def http_error(request: Request, error: HTTPException) -> Response:
    """Unknown URLs and methods: JSON under /api/ (FastAPI's own answer), the error page for browsers."""
    if is_api(request):
        return await http_exception_handler(request, error)
    if error.status_code == 404:
        return await error_page(request, 404, f"There is no page at {request.url.path}.")
    return await error_page(request, error.status_code, str(error.detail))


async def validation_error(request: Request, error: RequestValidationError) -> Response:
    """A malformed path (e.g. /references/abc/withdraw) is a page that does not exist; a bad form or query
    value is 422, naming the value."""
    if is_api(request):
        return await request_validation_exception_handler(request, error)
    problems = error.errors()
    if all(problem["loc"][:1] == ("path",) for problem in problems):
        return await error_page(request, 404, f"There is no page at {request.url.path}.")
    fields = "; ".join(
        f"{problem['loc'][-1]}: {problem['msg']} (got {problem.get('input')!r})" for problem in problems
    )
    return await error_page(request, 422, f"The request is not what this page takes ({fields}).")


def create_app(cfg) -> FastAPI:
    """The portal app over the workspace of `cfg` (the `portal` group configures it); `app.state.portal`
    is its `BrandPortal`."""
    portal = BrandPortal(cfg)
    settings = portal.settings
    app = FastAPI(
        title="brandsentry brand portal",
        description="Brand representatives submit, list and withdraw reference photos of their own brand "
        "and answer the listings scoring flagged under it (the inbox); admins review the pending queue. Authenticate with `Authorization: Bearer <token>` "
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
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(api.router)
    app.include_router(web.router)
    return app
