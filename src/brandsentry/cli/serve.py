"""`brandsentry serve`: the brand portal and its JSON API under uvicorn (portal.host, portal.port)."""

from __future__ import annotations

from brandsentry.cli._parser import add_command


def register(subparsers) -> None:
    server = add_command(
        subparsers,
        "serve",
        help="run the brand portal (web pages + JSON API)",
        description="Serve the brand portal for the workspace (workspace=DIR) on portal.host:portal.port "
        "(default 127.0.0.1:8000). The API is documented at /docs and /openapi.json. "
        "Create tokens first: `brandsentry tokens create --brand B --name NAME`.",
        examples=("serve workspace=data/ws", "serve portal.host=0.0.0.0 portal.port=8080"),
    )
    server.set_defaults(handler=serve_command)


def serve_command(args, overrides: list[str]) -> int:
    import uvicorn

    from brandsentry.config import load_config
    from brandsentry.portal.app import create_app

    app = create_app(load_config(overrides))
    settings = app.state.portal.settings
    print(f"brand portal on http://{settings.host}:{settings.port}/ (API docs: /docs); Ctrl-C stops it")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", proxy_headers=False)
    return 0
