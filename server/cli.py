"""`samen` command line: `samen serve` runs a node; `samen user|token` (cli_people.py)
manage people and tokens."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import signal
import sys
from pathlib import Path

from .cli_people import add_people_commands, run_people_command
from .cli_spaces import add_space_commands, run_space_command
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
    site = commands.add_parser("site", help="site identity for federation")
    site_commands = site.add_subparsers(dest="site_command", required=True)
    init = site_commands.add_parser(
        "init",
        help="create this site's id and Ed25519 key pair",
        description="Write a new private key and print the public key and a [[peer]] entry for other sites.",
    )
    init.add_argument("--site-id", required=True, help="the new site's id, e.g. lyon")
    init.add_argument("--key-file", required=True, type=Path, help="where to write the private key (PEM)")
    init.add_argument("--url", default="wss://HOST/federation", help="this site's federation URL")
    add_people_commands(commands)
    add_space_commands(commands)
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
    if args.command == "space":
        return run_space_command(args)
    if args.command == "site" and args.site_command == "init":
        return site_init(args.site_id, args.key_file, args.url)
    status = run_people_command(args)
    return 2 if status is None else status


def site_init(site_id: str, key_file: Path, url: str) -> int:
    from .federation.identity import create_identity

    try:
        identity = create_identity(site_id, key_file)
    except ConfigError as exc:
        print(f"samen: {exc}", file=sys.stderr)
        return 2
    public = identity.public_key.to_text()
    print(f"site {site_id}: private key written to {key_file} (keep it secret, keep a backup)")
    print(f"public key: {public}")
    print("\nRun this site with:")
    print(f"  SAMEN_SITE_ID={site_id} SAMEN_SITE_KEY={key_file} SAMEN_PEERS_FILE=peers.toml samen serve")
    print("\nGive the other sites this entry for their peers file:\n")
    print(f'[[peer]]\nid = "{site_id}"\nurls = ["{url}"]\npublic_key = "{public}"')
    return 0


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
    from .federation.handshake import FEDERATION_PATH, PRE_AUTH_MAX_FRAME
    from .listener import guarded_protocols

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # asyncpg's pool logs a full traceback for every reconnection attempt while PostgreSQL
    # is down; /readyz and our own warnings already say so.
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    raise_descriptor_limit()  # before the app sizes its connection limits on it
    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"samen: {exc}", file=sys.stderr)
        return 2
    http, ws = guarded_protocols(
        app.admission,
        settings.handshake_timeout,
        settings.first_message_timeout,
        # A site link is a stranger until its handshake is done: small frames until then.
        small_until_lifted={FEDERATION_PATH: PRE_AUTH_MAX_FRAME},
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        http=http,
        ws=ws,
        # Client endpoints enforce max_message_size themselves; the slack lets a site-link
        # batch carry one maximal client update plus its framing.
        ws_max_size=settings.max_message_size + 1024 * 1024,
        # Off by default, like the Node reference servers: compressing small Yjs updates costs
        # several times the CPU of sending them, and a zlib context per connection.
        ws_per_message_deflate=settings.ws_compression,
        ws_ping_interval=settings.ping_interval,
        ws_ping_timeout=settings.ping_timeout,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_timeout),
        log_level=settings.log_level.lower(),
        # X-Forwarded-Proto/-For are believed from these only (Secure cookies, audit addresses).
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        access_log=False,
        # Usually a proxy terminates TLS; these let a site serve wss:// itself.
        ssl_certfile=settings.tls_cert or None,
        ssl_keyfile=settings.tls_key or None,
    )
    # uvicorn and websockets log two lines per WebSocket at INFO ("[accepted]", "connection
    # open"), one per refused upgrade, and "connection closed": noise at a thousand clients,
    # and a flood of refusals would flood the log. Samen logs refusals itself, rate-limited.
    logging.getLogger("uvicorn.error").addFilter(_per_connection_lines)
    server = uvicorn.Server(config)
    # uvicorn handles SIGTERM/SIGINT itself (stop accepting, close sockets with 1012, run
    # the lifespan shutdown that flushes every pending write) and then re-raises the signal
    # to whatever handler was there before. Installing a no-op one makes a graceful stop
    # exit with status 0 instead of dying by the re-raised signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server.run()
    return 0 if server.started else 1


_PER_CONNECTION_MESSAGES = frozenset({"connection open", "connection closed"})


def _per_connection_lines(record: logging.LogRecord) -> bool:
    if record.levelno > logging.INFO:
        return True
    message = record.msg if isinstance(record.msg, str) else ""
    return not (message in _PER_CONNECTION_MESSAGES or message.startswith('%s - "WebSocket %s"'))


def raise_descriptor_limit() -> None:
    """Raise the soft limit on open files to the hard one: every client is a descriptor, and
    1024 (a common soft default) is a few hundred browser tabs."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux refuses "infinity" here
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger(__name__).warning("could not raise the open-files limit from %d: %s", soft, exc)
