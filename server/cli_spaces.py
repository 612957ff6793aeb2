"""`samen space ...`: spaces and their members from the command line.

The commands act on the node's configured store (the SQLite file in SAMEN_DATA_DIR, or
SAMEN_DATABASE_URL) as the operator (a site admin, "cli" in the audit log), through the
same service as the REST API. Running nodes follow the revocation feed, so a member removed
or lowered here loses access within a second on every node.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from .domain.errors import DomainError
from .domain.space_service import OPERATOR, SpaceService
from .domain.spaces import JoinPolicy, SpaceRole, Visibility
from .errors import ConfigError, StoreError
from .settings import Settings

__all__ = ["add_space_commands", "run_space_command"]

T = TypeVar("T")
ROLES = [role.value for role in SpaceRole]


def add_space_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    space = commands.add_parser("space", help="spaces and their members")
    sub = space.add_subparsers(dest="space_command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--data-dir", type=Path, default=None, help="overrides SAMEN_DATA_DIR")
        parser.add_argument("--database-url", default=None, help="overrides SAMEN_DATABASE_URL")
        return parser

    create = command("create", "create a space (the CLI makes no member: add its admin)")
    create.add_argument("slug", help="lower-case letters, digits and inner '-'; fixed for ever")
    create.add_argument("--title", required=True)
    create.add_argument("--description", default="")
    create.add_argument("--join", choices=[p.value for p in JoinPolicy], default="open", help="join policy")
    create.add_argument("--secret", action="store_true", help="non-members cannot learn that it exists")
    create.add_argument("--home", default="", help="the site that decides its membership (default: this one)")
    add = command("add-member", "add a person to a space")
    add.add_argument("slug")
    add.add_argument("name", help='"name" (this site) or "name@site"')
    add.add_argument("--role", required=True, choices=ROLES)
    remove = command("remove-member", "remove a person from a space (their sessions there close)")
    remove.add_argument("slug")
    remove.add_argument("name")
    set_role = command("set-role", "change a member's role (a lower role takes effect at once)")
    set_role.add_argument("slug")
    set_role.add_argument("name")
    set_role.add_argument("role", choices=ROLES)
    for name, help_text in (("archive", "archive a space (read-only)"), ("unarchive", "unarchive a space")):
        command(name, help_text).add_argument("slug")
    for name, help_text in (
        ("share", "share a space of this site with a peer site (its home sends it the members)"),
        ("unshare", "stop sharing a space with a peer site"),
    ):
        parser = command(name, help_text)
        parser.add_argument("slug")
        parser.add_argument("site", help="the peer's site id")
    command("members", "list the members of a space").add_argument("slug")
    command("list", "list every space")


def run_space_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
    except ConfigError as exc:
        print(f"samen: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_with_service(settings, lambda spaces: _run(spaces, args)))
    except DomainError as exc:
        print(f"samen: {exc.message} ({exc.code})", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"samen: {exc}", file=sys.stderr)
        return 1


async def _with_service(settings: Settings, run: Callable[[SpaceService], Awaitable[T]]) -> T:
    from .auth.service import build_auth
    from .domain.space_service import PeopleDirectory

    auth = build_auth(settings)  # node "": running nodes pick the revocations up from the feed
    await auth.open()
    try:
        return await run(SpaceService(auth.db, PeopleDirectory(auth.people), auth.audit, auth.revocations))
    finally:
        await auth.close()


async def _run(spaces: SpaceService, args: argparse.Namespace) -> int:
    command = args.space_command
    if command in ("share", "unshare"):
        from .domain.space_federation import SpaceFederation

        site = getattr(spaces.directory, "site", "")
        await SpaceFederation(spaces, site).share(OPERATOR, args.slug, args.site, command == "share")
        done = "shared with" if command == "share" else "no longer shared with"
        print(f"space {args.slug} {done} {args.site}")
    elif command == "create":
        visibility = Visibility.SECRET if args.secret else Visibility.LISTED
        space = await spaces.create(
            OPERATOR, args.slug, args.title, description=args.description,
            join_policy=JoinPolicy(args.join), visibility=visibility, home=args.home,
        )  # fmt: skip
        print(f"space {space.slug} created ({space.join_policy.value}, {space.visibility.value})")
    elif command == "add-member":
        member = await spaces.add_member(OPERATOR, args.slug, args.name, SpaceRole(args.role))
        print(f"{member.person} is {member.role.value} of {args.slug}")
    elif command == "remove-member":
        await spaces.remove_member(OPERATOR, args.slug, args.name)
        print(f"{args.name} removed from {args.slug}")
    elif command == "set-role":
        member = await spaces.set_role(OPERATOR, args.slug, args.name, SpaceRole(args.role))
        print(f"{member.person} is {member.role.value} of {args.slug}")
    elif command in ("archive", "unarchive"):
        await spaces.set_archived(OPERATOR, args.slug, command == "archive")
        print(f"space {args.slug} {command}d")
    elif command == "members":
        for m in await spaces.members(OPERATOR, args.slug):
            print(f"{m.person}\t{m.role.value}")
    elif command == "list":
        for view in await spaces.list_spaces(OPERATOR):
            s = view.space
            state = " archived" if s.archived else ""
            print(f"{s.slug}\t{s.join_policy.value}\t{s.visibility.value}{state}\t{s.title}")
    return 0
