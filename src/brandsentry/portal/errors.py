"""The portal's refusals, each with the HTTP status the web layer answers it with (`app.portal_error`)."""

from __future__ import annotations

from brandsentry.errors import BrandsentryError


class PortalError(BrandsentryError):
    """A refused request; `status_code` is the HTTP status the web layer answers with."""

    status_code = 400


class Unauthenticated(PortalError):
    status_code = 401


class Forbidden(PortalError):
    status_code = 403


class NotFound(PortalError):
    status_code = 404


class Conflict(PortalError):
    status_code = 409


class TooLarge(PortalError):
    status_code = 413


class Unprocessable(PortalError):
    status_code = 422
