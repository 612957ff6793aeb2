"""Spaces, the intranet's groups: the model, slug and document-name rules.

A space has a fixed slug, a title and a description, a join policy (open, on request,
invitation only), a visibility (listed, or secret: a non-member cannot learn that it
exists) and a home site (the site that decides its membership and roles: "" for this one; see
space_federation.py).

A document belongs to the space named before the first `/` of its name: `eng/roadmap` is
in `eng`. `space_of` is the one place that parses a document name; it refuses path tricks
(`..`, empty segments, percent escapes, backslashes, control characters) so that no name
can look like one space to one reader and another space to another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import DomainError

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_SLUG",
    "MAX_TITLE",
    "Invitation",
    "InvitationStatus",
    "JoinPolicy",
    "JoinRequest",
    "Member",
    "RequestStatus",
    "Space",
    "SpaceError",
    "SpaceRole",
    "Visibility",
    "check_description",
    "check_home",
    "check_slug",
    "check_title",
    "role_rank",
    "space_of",
]

MAX_SLUG = 64
MAX_TITLE = 200
MAX_DESCRIPTION = 4000

# Lower-case letters, digits and inner hyphens: safe in a URL path, a Redis channel name, a
# document name's first segment and a file name, with nothing to escape or normalise.
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
# Segments after the space: anything printable but the characters that make a name mean
# something else once a proxy, a browser or a file system has decoded it.
_BAD_SEGMENT_CHARS = re.compile(r"[\x00-\x1f\x7f%\\]")
_SITE_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")  # as federation/identity.py spells site ids


class SpaceError(DomainError):
    """A refused space operation. `code` is the REST error code (`space_not_found`,
    `forbidden`, ...), `status` its HTTP status; `message` is safe to show the caller."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(code, message)
        self.status = status


class SpaceRole(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    MODERATOR = "moderator"
    ADMIN = "admin"


_RANK = {SpaceRole.VIEWER: 1, SpaceRole.EDITOR: 2, SpaceRole.MODERATOR: 3, SpaceRole.ADMIN: 4}


def role_rank(role: SpaceRole | None) -> int:
    """0 for no membership; roles are ordered viewer < editor < moderator < admin."""
    return 0 if role is None else _RANK[role]


class JoinPolicy(StrEnum):
    OPEN = "open"  # anyone of the site (not guests) joins at once
    REQUEST = "request"  # a space admin approves or declines
    INVITE = "invite"  # only by a space admin's invitation


class Visibility(StrEnum):
    LISTED = "listed"
    SECRET = "secret"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DECLINED = "declined"


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class Space:
    slug: str
    title: str
    description: str = ""
    join_policy: JoinPolicy = JoinPolicy.OPEN
    visibility: Visibility = Visibility.LISTED
    home: str = ""  # the site that decides membership; "" = this site
    archived: bool = False
    default_role: SpaceRole = SpaceRole.EDITOR  # given on an open join or an approval
    created_by: str = ""
    created_at: float = 0.0
    version: int = 0  # raised by every change at the home; a copy keeps the home's (0007)

    @property
    def prefix(self) -> str:
        """What every document name of this space starts with (a revocation's prefix)."""
        return self.slug + "/"


@dataclass(frozen=True, slots=True)
class Member:
    space: str
    person: str  # "name@site"
    role: SpaceRole
    added_by: str = ""
    added_at: float = 0.0


@dataclass(frozen=True, slots=True)
class JoinRequest:
    id: str
    space: str
    person: str
    status: RequestStatus
    message: str = ""
    created_at: float = 0.0
    decided_by: str = ""
    decided_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Invitation:
    id: str
    space: str
    person: str
    role: SpaceRole
    status: InvitationStatus
    invited_by: str = ""
    created_at: float = 0.0
    decided_at: float = 0.0


def _invalid(what: str, why: str) -> SpaceError:
    return SpaceError(422, f"invalid_{what}", f"{what} {why}")


def check_slug(slug: str) -> str:
    """`slug` if it is a valid space slug, else `SpaceError` 422 `invalid_slug`."""
    if not slug or len(slug) > MAX_SLUG:
        raise _invalid("slug", f"must be 1 to {MAX_SLUG} characters")
    if _SLUG.fullmatch(slug) is None:
        raise _invalid("slug", "may hold only lower-case letters, digits and inner '-'")
    return slug


def _check_text(what: str, value: str, limit: int, *, multiline: bool) -> str:
    if len(value) > limit:
        raise _invalid(what, f"must be at most {limit} characters")
    allowed = "\n\t" if multiline else ""
    if any((ord(ch) < 0x20 and ch not in allowed) or ord(ch) == 0x7F for ch in value):
        raise _invalid(what, "contains control characters")
    return value


def check_title(title: str) -> str:
    title = _check_text("title", title, MAX_TITLE, multiline=False)
    if not title.strip():
        raise _invalid("title", "must not be empty")
    return title


def check_description(description: str) -> str:
    return _check_text("description", description, MAX_DESCRIPTION, multiline=True)


def check_home(home: str) -> str:
    """ "" (this site) or a site id."""
    if home and _SITE_ID.fullmatch(home) is None:
        raise _invalid("home", "must be a site id: 1-63 of a-z, 0-9, '.', '_', '-'")
    return home


def space_of(document: str) -> str | None:
    """The slug of the space `document` belongs to, or None if the name has no space or
    holds a path trick. Pure and cheap: it runs once per session."""
    slug, sep, rest = document.partition("/")
    if not sep or not rest or len(slug) > MAX_SLUG or _SLUG.fullmatch(slug) is None:
        return None
    for segment in rest.split("/"):
        if segment in ("", ".", "..") or _BAD_SEGMENT_CHARS.search(segment):
            return None
    return slug
