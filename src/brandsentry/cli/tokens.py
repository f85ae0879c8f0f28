"""`brandsentry tokens create|list|revoke`: the portal's access tokens (shown once, stored as salted hashes)."""

from __future__ import annotations

import getpass

from brandsentry.cli._parser import add_command, add_group


def register(subparsers) -> None:
    actions = add_group(
        subparsers,
        "tokens",
        help="create, list and revoke brand portal tokens",
        description="Access tokens of the brand portal (`brandsentry serve`) in the workspace (workspace=DIR).",
        examples=("tokens create --brand Acme --name 'Jo at Acme' workspace=data/ws", "tokens list --active"),
    )

    creator = add_command(
        actions,
        "create",
        help="create a token and print it once",
        description="Print a new token once; only a salted hash is stored, so a lost token cannot be shown "
        "again: revoke it and create another.",
        examples=("tokens create --brand Acme --name 'Jo at Acme'", "tokens create --admin --name ops"),
    )
    role = creator.add_mutually_exclusive_group(required=True)
    role.add_argument("--brand", help="the one brand this token reads and writes")
    role.add_argument(
        "--admin", action="store_true", help="an admin token: reviews every brand's submissions"
    )
    creator.add_argument("--name", required=True, help="who holds the token (shown in the audit log)")
    creator.add_argument(
        "--new-brand",
        action="store_true",
        help="--brand names a brand the workspace does not know yet (without it an unknown brand is refused)",
    )
    creator.set_defaults(handler=create_command)

    lister = add_command(
        actions,
        "list",
        help="list tokens (never their secrets)",
        description="List tokens: key id, role, brand, holder, when created and revoked.",
        examples=("tokens list", "tokens list --brand Acme --active"),
    )
    lister.add_argument("--brand", help="only this brand's tokens")
    lister.add_argument("--active", action="store_true", help="leave out revoked tokens")
    lister.set_defaults(handler=list_command)

    revoker = add_command(
        actions,
        "revoke",
        help="revoke tokens by key id; their sessions end at once",
        description="Revoke tokens by KEY_ID; exit status 1 when any key id is unknown (the others are "
        "still revoked).",
        examples=("tokens revoke 3f9a2c1b7d40",),
    )
    revoker.add_argument("key_ids", nargs="+", metavar="KEY_ID", help="as `tokens list` shows them")
    revoker.set_defaults(handler=revoke_command)


def _open(overrides: list[str]):
    from brandsentry.catalog import Catalog
    from brandsentry.config import Workspace, load_config
    from brandsentry.portal.auth import AuditLog, TokenStore

    workspace = Workspace.from_config(load_config(overrides)).ensure()
    catalog = Catalog.open(workspace)
    return catalog, TokenStore(catalog), AuditLog(catalog)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def create_command(args, overrides: list[str]) -> int:
    catalog, tokens, audit = _open(overrides)
    with catalog:
        token, record = tokens.create(
            name=args.name, brand=args.brand, admin=args.admin, new_brand=args.new_brand
        )
        audit.record(
            actor=_actor(),
            brand=record.brand,
            action="token_create",
            target=record.key_id,
            outcome="ok",
            detail={"name": record.name, "role": record.role},
        )
    scope = f"brand {record.brand!r}" if record.brand else "admin"
    print(f"created {scope} token {record.key_id} for {record.name!r}; it is shown only now:")
    print(token)
    return 0


def list_command(args, overrides: list[str]) -> int:
    catalog, tokens, _ = _open(overrides)
    with catalog:
        records = tokens.list(brand=args.brand, include_revoked=not args.active)
    header = ("key_id", "role", "brand", "name", "created_at", "revoked_at")
    rows = [
        (r.key_id, r.role, r.brand or "-", r.name, r.created_at[:19], (r.revoked_at or "")[:19])
        for r in records
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())
    active = sum(r.active for r in records)
    print(f"{len(records)} token(s): {active} active, {len(records) - active} revoked")
    return 0


def revoke_command(args, overrides: list[str]) -> int:
    """Exit 1 when any key id is unknown (the others are still revoked)."""
    from brandsentry.portal.auth import TokenError

    catalog, tokens, audit = _open(overrides)
    failed = 0
    with catalog:
        for key_id in args.key_ids:
            try:
                record = tokens.revoke(key_id)
            except TokenError as exc:
                failed += 1
                print(f"  not revoked  {key_id}: {exc}")
                continue
            audit.record(
                actor=_actor(), brand=record.brand, action="token_revoke", target=record.key_id, outcome="ok"
            )
            print(
                f"  revoked      {record.key_id} ({record.role}, {record.brand or 'all brands'}, {record.name})"
            )
    return 1 if failed else 0
