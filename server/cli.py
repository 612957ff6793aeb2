"""`samen` command line: `samen serve` runs a node."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from .errors import ConfigError
from .settings import SETTINGS_HELP, Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samen", description="Samen collaboration server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run a server node",
        description="Run a Samen node. Every flag can also be set as SAMEN_<FLAG> in the environment.",
    )
    migrate = commands.add_parser(
        "migrate",
        help="apply pending PostgreSQL schema migrations and exit",
        description="Apply pending schema migrations to SAMEN_DATABASE_URL (nodes also do it at start-up).",
    )
    migrate.add_argument("--database-url", default=None, help="overrides SAMEN_DATABASE_URL")
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        help_text = f"{SETTINGS_HELP[f.name]} (env SAMEN_{f.name.upper()}, default {default!r})"
        if str(f.type) == "bool":
            serve.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        kind = {"int": int, "float": float, "Path": Path}.get(str(f.type), str)
        serve.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=None,
            help=help_text,
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
        try:
            settings = Settings.from_env(**overrides)
        except ConfigError as exc:
            print(f"samen: {exc}", file=sys.stderr)
            return 2
        return serve(settings)
    if args.command == "migrate":
        return migrate(args.database_url)
    return 2


def migrate(database_url: str | None) -> int:
    import asyncio

    from .errors import StoreError
    from .store.migrate import migrate as apply_migrations

    try:
        settings = Settings.from_env(database_url=database_url)
    except ConfigError as exc:
        print(f"samen: {exc}", file=sys.stderr)
        return 2
    if not settings.database_url:
        print("samen: migrate needs SAMEN_DATABASE_URL or --database-url", file=sys.stderr)
        return 2
    try:
        applied = asyncio.run(apply_migrations(settings.database_url))
    except StoreError as exc:
        print(f"samen: migration failed: {exc}", file=sys.stderr)
        return 1
    print(f"applied migrations: {', '.join(map(str, applied))}" if applied else "schema is up to date")
    return 0


def serve(settings: Settings) -> int:
    import uvicorn

    from .app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        ws_max_size=settings.max_message_size,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM/SIGINT itself (stop accepting, close sockets with 1012, run
    # the lifespan shutdown that flushes every pending write) and then re-raises the signal
    # to whatever handler was there before. Installing a no-op one makes a graceful stop
    # exit with status 0 instead of dying by the re-raised signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server.run()
    return 0 if server.started else 1
