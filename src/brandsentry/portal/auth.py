"""Who may do what in the portal: API tokens, signed session cookies, CSRF tokens and the audit log.

Tokens look like `bst_<key id>_<secret>`. The key id (public, 12 hex digits) finds the row; only a salted
SHA-256 of the 256-bit random secret is stored. A slow password hash would buy nothing for secrets of that
entropy and would cost every API call. A browser session is a row of `portal_sessions` (only a hash of its
random id is stored) named by a cookie signed with HMAC-SHA256 under a secret kept in the workspace: every
request looks the row up, so signing out ends the session on the server (a copied cookie stops working) and
revoking a token ends its sessions at the next request. The tables live in the catalog database
(`portal.tables`) so that a change and its audit row can share one transaction.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from brandsentry.catalog import Catalog, utc_now
from brandsentry.errors import BrandsentryError
from brandsentry.files import atomic_create
from brandsentry.portal.tables import PORTAL_TABLES

ROLES = ("brand", "admin")
_TOKEN = re.compile(r"^bst_([0-9a-f]{12})_([0-9a-f]{64})$")
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_TOKEN_COLUMNS = "key_id, name, role, brand, created_at, revoked_at"
_AUDIT_COLUMNS = "id, at, actor, brand, action, target, outcome, detail"


class TokenError(BrandsentryError, ValueError):
    """A token operation that cannot be done (unknown key id, empty name, brand token without a brand)."""


class UnknownBrandError(TokenError):
    """A brand token for a brand the workspace does not know, most likely a typo of one it does."""

    def __init__(self, brand: str, known: list[str]):
        self.brand = brand
        self.suggestion = closest_brand(brand, known)
        if self.suggestion:
            hint = f"did you mean {self.suggestion!r}?"
        elif known:
            hint = f"known brands: {', '.join(known)}"
        else:
            hint = "the workspace knows no brands yet"
        super().__init__(f"unknown brand {brand!r}: {hint} (pass --new-brand to create brand {brand!r})")


def closest_brand(brand: str, known: list[str]) -> str | None:
    """The known brand nearest to `brand`, ignoring case (difflib's ratio >= 0.6); None when none is close."""
    by_folded = {name.casefold(): name for name in known}
    close = difflib.get_close_matches(brand.casefold(), list(by_folded), n=1)
    return by_folded[close[0]] if close else None


@dataclass(frozen=True)
class TokenRecord:
    """A token as stored, without its secret."""

    key_id: str
    name: str
    role: str
    brand: str | None
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    key_id: str
    name: str
    role: str
    brand: str | None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"{self.role}:{self.name}#{self.key_id}"


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    brand: str | None
    action: str
    target: str | None
    outcome: str
    detail: dict


def _secret_hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


class TokenStore:
    """Create, verify, list and revoke portal tokens held in the catalog database."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        catalog.ensure_schema(PORTAL_TABLES)

    def create(
        self, *, name: str, brand: str | None = None, admin: bool = False, new_brand: bool = False
    ) -> tuple[str, TokenRecord]:
        """A new token: the plaintext (shown once, never stored) and its record.

        A brand token's brand must be known (`known_brands`) unless `new_brand`: a typo would otherwise
        start an empty brand whose uploads nobody reviews against the real one.
        """
        name = (name or "").strip()
        brand = (brand or "").strip() or None
        if not name:
            raise TokenError("a token needs a --name (who holds it)")
        if admin and brand:
            raise TokenError(f"an admin token serves every brand; drop --brand {brand!r}")
        if not admin and not brand:
            raise TokenError("a brand token needs --brand (or pass --admin for an admin token)")
        if new_brand and admin:
            raise TokenError("--new-brand starts a brand for a brand token; an admin token has no brand")
        key_id, secret, salt = secrets.token_hex(6), secrets.token_hex(32), secrets.token_hex(16)
        role = "admin" if admin else "brand"
        with self.catalog.write() as connection:
            if brand and not new_brand and brand not in (known := self.known_brands()):
                raise UnknownBrandError(brand, known)
            row = connection.execute(
                f"""INSERT INTO portal_tokens (key_id, name, role, brand, salt, secret_hash, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {_TOKEN_COLUMNS}""",
                (key_id, name, role, brand, salt, _secret_hash(salt, secret), utc_now()),
            ).fetchone()
        return f"bst_{key_id}_{secret}", TokenRecord(*row)

    def verify(self, token: str | None) -> Principal | None:
        """The principal of a valid, unrevoked token; None for anything else (malformed, unknown, wrong)."""
        match = _TOKEN.match((token or "").strip())
        if match is None:
            return None
        key_id, secret = match.groups()
        cursor = self.catalog.connection().execute(
            "SELECT name, role, brand, salt, secret_hash FROM portal_tokens "
            "WHERE key_id = ? AND revoked_at IS NULL",
            (key_id,),
        )
        row = cursor.fetchone()
        if row is None:
            return None
        name, role, brand, salt, stored = row
        if not hmac.compare_digest(_secret_hash(salt, secret), stored):
            return None
        return Principal(key_id=key_id, name=name, role=role, brand=brand)

    def known_brands(self) -> list[str]:
        """Brands of the catalog and of every token ever created (a new brand has no references yet)."""
        cursor = self.catalog.connection().execute(
            "SELECT name FROM brands UNION SELECT brand FROM portal_tokens WHERE brand IS NOT NULL ORDER BY 1"
        )
        return [row[0] for row in cursor.fetchall()]

    def list(self, brand: str | None = None, include_revoked: bool = True) -> list[TokenRecord]:
        clauses, params = [], []
        if brand is not None:
            clauses.append("brand = ?")
            params.append(brand)
        if not include_revoked:
            clauses.append("revoked_at IS NULL")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        cursor = self.catalog.connection().execute(
            f"SELECT {_TOKEN_COLUMNS} FROM portal_tokens {where} ORDER BY created_at, key_id", params
        )
        rows = cursor.fetchall()
        return [TokenRecord(*row) for row in rows]

    def revoke(self, key_id: str) -> TokenRecord:
        """Revoke a token (idempotent: revoking twice keeps the first revocation time)."""
        key_id = key_id.strip()
        match = _TOKEN.match(key_id)
        key_id = match.group(1) if match else key_id  # a whole token names its key id too
        if not _KEY_ID.match(key_id):
            raise TokenError(f"not a token key id: {key_id!r} (12 hex digits, as `tokens list` shows)")
        with self.catalog.write() as connection:
            row = connection.execute(
                f"""UPDATE portal_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE key_id = ?
                    RETURNING {_TOKEN_COLUMNS}""",
                (utc_now(), key_id),
            ).fetchone()
        if row is None:
            raise TokenError(f"unknown token key id {key_id!r}")
        return TokenRecord(*row)


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Server-side browser sessions: a session lives until sign-out, its expiry, or its token's revocation.

    The cookie carries the random session id; the table holds only its SHA-256, so a copy of the database
    does not sign anyone in.
    """

    def __init__(self, catalog: Catalog, max_age_s: int):
        self.catalog = catalog
        self.max_age_s = max_age_s
        catalog.ensure_schema(PORTAL_TABLES)

    def start(self, principal: Principal) -> str:
        """A new session id for `principal`; sessions past their expiry are deleted on the way."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with self.catalog.write() as connection:
            connection.execute("DELETE FROM portal_sessions WHERE expires_at < ?", (now,))
            connection.execute(
                "INSERT INTO portal_sessions (id_hash, key_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (_session_hash(session_id), principal.key_id, utc_now(), now + self.max_age_s),
            )
        return session_id

    def principal(self, session_id: str) -> Principal | None:
        """Whose live session this is: not ended, not expired, and its token not revoked."""
        cursor = self.catalog.connection().execute(
            """SELECT t.key_id, t.name, t.role, t.brand FROM portal_sessions s
               JOIN portal_tokens t ON t.key_id = s.key_id
               WHERE s.id_hash = ? AND s.ended_at IS NULL AND s.expires_at > ? AND t.revoked_at IS NULL""",
            (_session_hash(session_id), time.time()),
        )
        row = cursor.fetchone()
        return None if row is None else Principal(*row)

    def end(self, session_id: str) -> None:
        """Sign-out: the session's cookie, or any copy of it, no longer signs anyone in."""
        with self.catalog.write() as connection:
            connection.execute(
                "UPDATE portal_sessions SET ended_at = COALESCE(ended_at, ?) WHERE id_hash = ?",
                (utc_now(), _session_hash(session_id)),
            )


class AuditLog:
    """Append-only record of every portal action and refusal: who, what, when, outcome."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        catalog.ensure_schema(PORTAL_TABLES)

    def record(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        brand: str | None = None,
        target: str | int | None = None,
        detail: dict | None = None,
    ) -> None:
        """Append one row; joins the caller's write transaction when there is one (atomic with the change)."""
        with self.catalog.write() as connection:
            connection.execute(
                "INSERT INTO audit_log (at, actor, brand, action, target, outcome, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    utc_now(),
                    actor,
                    brand,
                    action,
                    None if target is None else str(target),
                    outcome,
                    json.dumps(detail or {}, sort_keys=True, default=str),
                ),
            )

    def entries(
        self, brand: str | None = None, action: str | None = None, limit: int = 200
    ) -> list[AuditEntry]:
        """The most recent entries first."""
        clauses, params = [], []
        if brand is not None:
            clauses.append("brand = ?")
            params.append(brand)
        if action is not None:
            clauses.append("action = ?")
            params.append(action)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        cursor = self.catalog.connection().execute(
            f"SELECT {_AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT ?",
            (*params, int(limit)),
        )
        rows = cursor.fetchall()
        return [AuditEntry(*row[:7], detail=json.loads(row[7] or "{}")) for row in rows]


def load_or_create_secret(path: Path) -> bytes:
    """The session-signing secret at `path`: created once (owner-only, published atomically), never overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():  # another process publishing first wins: every one then reads its secret
        atomic_create(path, secrets.token_bytes(32), mode=0o600)
    secret = path.read_bytes()
    if len(secret) < 32:
        raise TokenError(f"session secret {path} is shorter than 32 bytes; delete it to create a new one")
    return secret


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Signed, expiring session payloads for a cookie: `base64(json).base64(hmac)`; tampering reads as no session."""

    def __init__(self, secret: bytes, max_age_s: int):
        self._secret = secret
        self.max_age_s = max_age_s

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def dumps(self, data: dict) -> str:
        body = _b64(json.dumps({**data, "iat": int(time.time())}, separators=(",", ":")).encode())
        return f"{body}.{self._mac(body)}"

    def loads(self, value: str | None) -> dict | None:
        body, _, mac = (value or "").partition(".")
        if not body or not hmac.compare_digest(self._mac(body), mac):
            return None
        try:
            data = json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None
        issued = data.get("iat") if isinstance(data, dict) else None
        if not isinstance(issued, int) or time.time() - issued > self.max_age_s:
            return None
        return data


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))
