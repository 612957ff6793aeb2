"""Who may do what in a space: pure functions of (principal, space, standing), no I/O.

The authorizer (documents) and the space service (REST) both decide here, so a WebSocket
and a REST call can never disagree. The rules, as a table (rows: who; "member" columns use
the person's space role; ✗ = refused):

| who                       | sees the space       | documents                 | members list   | manage |
|---------------------------|----------------------|---------------------------|----------------|--------|
| anonymous                 | ✗ (REST 401)         | ✗ (2)                     | ✗              | ✗      |
| guest, not a member       | only if invited      | ✗                         | ✗              | ✗      |
| guest, member (any role)  | ✓                    | READ (capped)             | ✓              | ✗      |
| site member, not a member | listed ✓, secret ✗   | listed open: READ, else ✗ | listed open: ✓ | ✗      |
| viewer                    | ✓                    | READ                      | ✓              | ✗      |
| editor                    | ✓                    | WRITE                     | ✓              | ✗      |
| moderator                 | ✓                    | MODERATE                  | ✓              | ✗      |
| space admin               | ✓                    | MODERATE                  | ✓              | ✓      |
| community manager         | ✓ (secret too)       | MODERATE                  | ✓              | ✗ (1)  |
| site admin                | ✓ (secret too)       | MODERATE                  | ✓              | ✓      |

"manage": members, join requests, invitations, settings, archive. (1) unless it is also the
space's admin. (2) READ on listed open spaces with `SAMEN_ANONYMOUS_READ`. Community
managers and site admins create spaces (members do not: "slug taken" would tell them that a
secret space exists).

- An archived space is read-only: every grant is capped at READ, non-members other than
  site admins and community managers lose even that, and nothing but unarchiving changes it
  (409 `space_archived`).
- A read-scoped API token caps documents at READ and allows no REST change.
- "Sees" is the secret-space rule: who does not see a space gets the answer of a space that
  does not exist (REST 404 `space_not_found`, WebSocket 4403 / PermissionDenied).
- A space whose home is another site (federated, `space_federation.py`) is decided there:
  here only the roles it sent count (site admins and community managers of this site may
  read it, nothing more; other non-members nothing), and nothing of it changes here (409
  `space_not_home`).
- Guests read only the spaces they are members of (or invited to: they see those, to accept);
  they cannot join or ask to join, and whatever role they hold counts as viewer.
- Some documents of a space are more than a name (`document_access`): a page's document
  `<space>/page/<id>` exists only while the page does and is not in the trash (else NONE, for
  everyone); the page tree `<space>/index` is written by the server alone (at most READ);
  any other name under `<space>/page/` is NONE.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..auth.ports import Grant, Principal
from .pages import DocumentKind
from .spaces import JoinPolicy, Space, SpaceError, SpaceRole, Visibility, role_rank

__all__ = [
    "ADMIN",
    "COMMUNITY_MANAGER",
    "GUEST",
    "Action",
    "Standing",
    "check",
    "check_changeable",
    "check_decided_here",
    "check_signed_in",
    "check_writable",
    "document_access",
    "document_grant",
    "effective_role",
    "sees",
]

# Site roles (domain/people.py SITE_ROLES) that the rules single out.
ADMIN = "admin"
COMMUNITY_MANAGER = "community-manager"
GUEST = "guest"

_ROLE_GRANT = {
    SpaceRole.VIEWER: Grant.READ,
    SpaceRole.EDITOR: Grant.WRITE,
    SpaceRole.MODERATOR: Grant.MODERATE,
    SpaceRole.ADMIN: Grant.MODERATE,
}


class Action(StrEnum):
    """What REST asks about (documents are `document_grant`'s)."""

    SEE = "see"
    LIST_MEMBERS = "list-members"  # whoever may read the documents
    MANAGE = "manage"  # members, join requests, invitations, settings, archive


@dataclass(frozen=True, slots=True)
class Standing:
    """What the principal is in one space: its stored role (None: not a member) and whether
    an invitation waits for it."""

    role: SpaceRole | None = None
    invited: bool = False


NOBODY = Standing()


def effective_role(principal: Principal, role: SpaceRole | None) -> SpaceRole | None:
    """The role that counts: a guest's is at most viewer."""
    if role is not None and principal.site_role == GUEST:
        return SpaceRole.VIEWER
    return role


def sees(principal: Principal, space: Space, standing: Standing) -> bool:
    if principal.anonymous:
        return False
    if principal.site_role in (ADMIN, COMMUNITY_MANAGER) or standing.role is not None or standing.invited:
        return True
    return space.visibility == Visibility.LISTED and principal.site_role != GUEST


def document_grant(
    principal: Principal, space: Space | None, role: SpaceRole | None, *, anonymous_read: bool = False
) -> Grant:
    """What `principal` may do with the documents of `space` (None: no such space)."""
    if space is None:
        return Grant.NONE
    if space.home:
        # Another site decides this space: its roles are the only source of access here.
        # Its roles are the only source of write access here; this site's admins and
        # community managers may still read it (their own site shares it with them).
        role = effective_role(principal, role) if not principal.anonymous else None
        grant = Grant.NONE if role is None else _ROLE_GRANT[role]
        if principal.site_role in (ADMIN, COMMUNITY_MANAGER):
            grant = max(grant, Grant.READ)
        if space.archived or principal.scope == "read":
            grant = min(grant, Grant.READ)
        return grant
    if principal.anonymous:
        readable = anonymous_read and space.visibility == Visibility.LISTED
        readable = readable and space.join_policy == JoinPolicy.OPEN and not space.archived
        return Grant.READ if readable else Grant.NONE
    role = effective_role(principal, role)
    if principal.site_role in (ADMIN, COMMUNITY_MANAGER):
        grant = Grant.MODERATE
    elif role is not None:
        grant = _ROLE_GRANT[role]
    elif (
        principal.site_role != GUEST
        and space.visibility == Visibility.LISTED
        and space.join_policy == JoinPolicy.OPEN
        and not space.archived
    ):
        grant = Grant.READ  # an open space is readable by the whole site
    else:
        grant = Grant.NONE
    if space.archived or principal.scope == "read":
        grant = min(grant, Grant.READ)
    return grant


def document_access(grant: Grant, kind: DocumentKind, page_live: bool = False) -> Grant:
    """The grant on one document from `grant`, the grant on its space's documents."""
    if kind is DocumentKind.PAGE:
        return grant if page_live else Grant.NONE
    if kind is DocumentKind.INDEX:
        return min(grant, Grant.READ)
    if kind is DocumentKind.RESERVED:
        return Grant.NONE
    return grant


def _may_manage(principal: Principal, role: SpaceRole | None) -> bool:
    return principal.site_role == ADMIN or role_rank(effective_role(principal, role)) >= role_rank(
        SpaceRole.ADMIN
    )


def check(action: Action, principal: Principal, space: Space | None, standing: Standing = NOBODY) -> Space:
    """Return `space` if `principal` may do `action` in it; else raise `SpaceError`:
    401 `unauthenticated`, 404 `space_not_found` (also for a space it may not see),
    403 `forbidden` / `read_only_token`, 409 `space_archived`."""
    check_signed_in(principal)
    if space is None or not sees(principal, space, standing):
        raise SpaceError(404, "space_not_found", "no such space")
    if action == Action.SEE:
        return space
    if action == Action.LIST_MEMBERS:
        if document_grant(principal, space, standing.role) >= Grant.READ:
            return space
        raise SpaceError(403, "forbidden", "only members of this space may do that")
    check_writable(principal)
    if not _may_manage(principal, standing.role):
        raise SpaceError(403, "forbidden", "only a space admin may do that")
    return space


def check_signed_in(actor: Principal) -> None:
    if actor.anonymous:
        raise SpaceError(401, "unauthenticated", "sign in first")


def check_writable(actor: Principal) -> None:
    if actor.scope == "read":
        raise SpaceError(403, "read_only_token", "this token may only read")


def check_decided_here(space: Space) -> None:
    """A federated space's settings and members change only at its home site."""
    if space.home:
        raise SpaceError(
            409,
            "space_not_home",
            f"this space's members and settings are decided at its home site {space.home}",
        )


def check_changeable(space: Space) -> None:
    """Changes other than unarchiving are refused while the space is archived, and every
    change of a space whose home is another site."""
    check_decided_here(space)
    if space.archived:
        raise SpaceError(409, "space_archived", "the space is archived; unarchive it first")
