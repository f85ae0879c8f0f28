"""FastAPI dependencies of the portal's routes: the `BrandPortal`, and who is asking (a bearer token, a
signed session cookie, or a form post whose CSRF token matches its session). They read `request.app.state`,
so the routers hold nothing of one app. Module level so that FastAPI can resolve their annotations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Form, Request, Response, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from brandsentry.catalog import Reference
from brandsentry.ingest import IngestOutcome
from brandsentry.portal.auth import Principal, csrf_matches, new_csrf_token
from brandsentry.portal.service import BrandPortal, Forbidden, Unauthenticated, UploadedFile

SESSION_COOKIE = "brandsentry_session"


@dataclass
class WebSession:
    """The browser's session: `data` = {"sid": server-side session id or None, "csrf": token};
    `fresh` = cookie to set."""

    data: dict
    principal: Principal | None
    fresh: bool

    @classmethod
    def signed_out(cls) -> WebSession:
        """A new session with a new CSRF token, whose cookie the response sets."""
        return cls({"sid": None, "csrf": new_csrf_token()}, None, True)

    @property
    def csrf(self) -> str:
        return self.data["csrf"]


def portal_of(request: Request) -> BrandPortal:
    return request.app.state.portal


Portal = Annotated[BrandPortal, Depends(portal_of)]

bearer = HTTPBearer(auto_error=False, description="a portal token from `brandsentry tokens create`")


def api_principal(
    request: Request,
    portal: Portal,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    principal = portal.authenticate(credentials.credentials if credentials else None)
    request.state.principal = principal
    return principal


def web_session(request: Request, portal: Portal) -> WebSession:
    """The browser's session from its signed cookie; a missing, forged or expired cookie starts a fresh one,
    and so does one whose server-side session ended (signed out, expired, token revoked)."""
    data = request.app.state.signer.loads(request.cookies.get(SESSION_COOKIE))
    if not (isinstance(data, dict) and isinstance(data.get("csrf"), str)):
        session = WebSession.signed_out()
    elif not data.get("sid"):
        session = WebSession(data, None, False)
    else:
        principal = portal.sessions.principal(str(data["sid"]))
        session = WebSession(data, principal, False) if principal else WebSession.signed_out()
    request.state.session = session
    request.state.principal = session.principal
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


# -- what the API and the pages both do around a `BrandPortal` call ---------------------------------


def read_uploads(portal: BrandPortal, principal: Principal, files: list[UploadFile]) -> list[UploadedFile]:
    """Limits are checked on the sizes the parser saw before any file is read into memory."""
    files = [f for f in files if f.filename or f.size]  # a browser sends an empty part for "no file"
    portal.admit_upload(principal, [(f.filename, f.size or 0) for f in files])
    return [UploadedFile(f.filename, f.file.read()) for f in files]


def upload_outcome_status(outcomes: list[IngestOutcome]) -> int:
    """201 when something new was stored, 422 when every file was rejected, else 200 (all already held)."""
    if any(o.status == "accepted" for o in outcomes):
        return 201
    return 422 if all(o.status == "rejected" for o in outcomes) else 200


def keep_index_current(portal: BrandPortal, background: BackgroundTasks, changed: Reference) -> None:
    """After the response: add an approved reference to the index, or take a withdrawn one out of it."""
    if portal.settings.update_index and (changed.status == "approved" or changed.in_index):
        background.add_task(portal.indexer.request)


def jpeg_response(data: bytes) -> Response:
    """A thumbnail or evidence image: private to the signed-in caller, cached by its browser only."""
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
