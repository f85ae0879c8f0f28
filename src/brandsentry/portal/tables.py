"""The portal's tables in the workspace database: API tokens, browser sessions, the audit log, submission
quality checks.

They live in the catalog's file so that a change and its audit row share one transaction, but they are the
portal's: `TokenStore`, `AuditLog` and the check records create them on first use (`ensure_schema`).
Catalogs made before the portal owned them hold the same definitions (catalog migration 2).
"""

from __future__ import annotations

PORTAL_TABLES = """
CREATE TABLE IF NOT EXISTS portal_tokens (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('brand', 'admin')),
    brand TEXT,
    salt TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT,
    CHECK ((role = 'brand') = (brand IS NOT NULL))
);
CREATE TABLE IF NOT EXISTS portal_sessions (
    id_hash TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES portal_tokens(key_id),
    created_at TEXT NOT NULL,
    expires_at REAL NOT NULL,
    ended_at TEXT
);
CREATE TABLE IF NOT EXISTS audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    brand TEXT,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_brand ON audit_log(brand, id);
CREATE TABLE IF NOT EXISTS reference_checks (
    reference_id INTEGER NOT NULL REFERENCES "references"(id),
    code TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('warning', 'note')),
    message TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reference_checks_reference ON reference_checks(reference_id);
"""
