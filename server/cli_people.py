"""`samen user ...` and `samen token ...`: people and tokens, acting on the node's configured
store (the SQLite file in SAMEN_DATA_DIR, or SAMEN_DATABASE_URL) directly, so they work
whether or not a node runs. Running nodes apply suspensions and revocations within a second:
the commands write them to the revocation feed that every node reads (domain/revocations.py).

A token is printed alone on stdout (`TOKEN=$(samen token create ann)`); messages go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .auth.service import AuthServices, build_auth
from .domain.errors import DomainError
from .domain.people import SITE_ROLES
from .domain.tokens import parse_duration
from .errors import ConfigError, StoreError
from .settings import Settings

__all__ = ["add_people_commands", "run_people_command"]

ACTOR = "cli"


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, help="overrides SAMEN_DATA_DIR")
    parser.add_argument("--database-url", default=None, help="overrides SAMEN_DATABASE_URL")


def add_people_commands(commands: Any) -> None:
    user = commands.add_parser("user", help="people of this site")
    users = user.add_subparsers(dest="user_command", required=True)
    add = users.add_parser("add", help="create a person")
    add.add_argument("name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--site-role", choices=SITE_ROLES, default="member")
    add.add_argument("--email", default="")
    add.add_argument("--display-name", default="")
    for name, text in (
        ("suspend", "suspend a person: every session of theirs ends"),
        ("unsuspend", "reinstate"),
    ):
        command = users.add_parser(name, help=text)
        command.add_argument("name")
    role = users.add_parser("set-role", help="change a person's site role")
    role.add_argument("name")
    role.add_argument("role", choices=SITE_ROLES)
    password = users.add_parser("set-password", help="set a person's password (read from stdin)")
    password.add_argument("name")
    listing = users.add_parser("list", help="list the people of this site")
    token = commands.add_parser("token", help="personal API tokens")
    tokens = token.add_subparsers(dest="token_command", required=True)
    create = tokens.add_parser("create", help="create a token and print it (shown once)")
    create.add_argument("name", help="the owner")
    create.add_argument("--scope", choices=("read", "write"), default="write")
    create.add_argument("--expires", default="90d", help="lifetime: 45s, 90m, 12h, 30d, 2w (default 90d)")
    create.add_argument("--label", default="")
    revoke = tokens.add_parser("revoke", help="revoke a token by its id (its sessions close)")
    revoke.add_argument("token_id")
    token_list = tokens.add_parser("list", help="list a person's tokens")
    token_list.add_argument("name")
    for parser in (add, *users.choices.values(), listing, create, revoke, token_list):
        if not any(a.dest == "data_dir" for a in parser._actions):
            _store_options(parser)


def run_people_command(args: argparse.Namespace) -> int | None:
    """The exit status of a `user` or `token` command; None for other commands."""
    action: Callable[[AuthServices], Awaitable[None]]
    if args.command == "user":
        action = _USER[args.user_command](args)
    elif args.command == "token":
        action = _TOKEN[args.token_command](args)
    else:
        return None
    try:
        settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    return asyncio.run(_run(settings, action))


async def _run(settings: Settings, action: Callable[[AuthServices], Awaitable[None]]) -> int:
    auth = build_auth(settings)
    try:
        await auth.open()
    except StoreError as exc:
        return _fail(f"cannot open the store: {exc}", 1)
    try:
        await action(auth)
    except DomainError as exc:
        return _fail(f"{exc.message} ({exc.code})", 1)
    except StoreError as exc:
        return _fail(str(exc), 1)
    finally:
        await auth.close()
    return 0


def _fail(message: str, status: int) -> int:
    print(f"samen: {message}", file=sys.stderr)
    return status


def _read_password() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def _user_add(args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
    async def run(auth: AuthServices) -> None:
        password = _read_password() if args.password_stdin else None
        person = await auth.accounts.add_person(
            args.name, actor=ACTOR, site_role=args.site_role, email=args.email,
            display_name=args.display_name, password=password,
        )  # fmt: skip
        how = "with a password" if person.has_password else "without a password (identity provider only)"
        print(f"created {person.id} ({person.site_role}), {how}", file=sys.stderr)

    return run


def _user_suspend(
    suspended: bool,
) -> Callable[[argparse.Namespace], Callable[[AuthServices], Awaitable[None]]]:
    def command(args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
        async def run(auth: AuthServices) -> None:
            person = await auth.accounts.set_suspended(args.name, suspended, actor=ACTOR)
            print(f"{person.id} {'suspended' if suspended else 'reinstated'}", file=sys.stderr)

        return run

    return command


def _user_set_role(args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
    async def run(auth: AuthServices) -> None:
        person = await auth.accounts.set_site_role(args.name, args.role, actor=ACTOR)
        print(f"{person.id} is now {person.site_role}", file=sys.stderr)

    return run


def _user_set_password(args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
    async def run(auth: AuthServices) -> None:
        await auth.people.set_password(args.name, _read_password())
        print(f"password of {auth.people.person_id(args.name)} set", file=sys.stderr)

    return run


def _user_list(_args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
    async def run(auth: AuthServices) -> None:
        after = ""
        while people := await auth.people.page(after=after, limit=500):
            for person in people:
                state = " (suspended)" if person.suspended else ""
                print(f"{person.id}\t{person.site_role}\t{person.email}{state}")
            after = people[-1].name

    return run


def _token_create(args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
    async def run(auth: AuthServices) -> None:
        lifetime = parse_duration(args.expires)
        info, token = await auth.accounts.create_token(
            args.name, actor=ACTOR, scope=args.scope, lifetime=lifetime, label=args.label
        )
        print(token)
        print(
            f"token {info.id} of {auth.people.person_id(args.name)} ({info.scope}); shown once",
            file=sys.stderr,
        )

    return run


def _token_revoke(args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
    async def run(auth: AuthServices) -> None:
        info = await auth.accounts.revoke_token(args.token_id, actor=ACTOR)
        print(f"token {info.id} revoked", file=sys.stderr)

    return run


def _token_list(args: argparse.Namespace) -> Callable[[AuthServices], Awaitable[None]]:
    async def run(auth: AuthServices) -> None:
        await auth.people.require(args.name)
        for info in await auth.tokens.of(args.name):
            state = "revoked" if info.revoked_at is not None else "active"
            print(f"{info.id}\t{info.scope}\t{state}\t{info.label}")

    return run


_USER: dict[str, Callable[[argparse.Namespace], Callable[[AuthServices], Awaitable[None]]]] = {
    "add": _user_add,
    "suspend": _user_suspend(True),
    "unsuspend": _user_suspend(False),
    "set-role": _user_set_role,
    "set-password": _user_set_password,
    "list": _user_list,
}
_TOKEN: dict[str, Callable[[argparse.Namespace], Callable[[AuthServices], Awaitable[None]]]] = {
    "create": _token_create,
    "revoke": _token_revoke,
    "list": _token_list,
}
