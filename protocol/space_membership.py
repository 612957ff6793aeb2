"""A space's membership as its home site signs it for the sites the space is shared with.

Sent over the site link as a MEMBERSHIP message (protocol/sitelink.py):

    MEMBERSHIP  varUint8Array(signed body) • varUint8Array(signature by the home site)
    body = varString("samen-space/1") • varString(home site) • varString(space slug)
           • varUint(version) • varString(title) • varString(description)
           • varString(join policy) • varString(visibility) • varUint(archived: 0 or 1)
           • varString(default role)
           • varUint(n) • n × varString(site)                 the sites it is shared with
           • varUint(m) • m × (varString(person) • varString(role))   "name@site", role

The whole state, not a change: a site that missed some applies the latest one, and one it
applied already (version not above its own) changes nothing. The values are strings here;
the server checks them against its domain (server/domain/space_federation.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError
from .lib0 import Decoder, Encoder

__all__ = ["MEMBERSHIP_DOMAIN", "MembershipBody", "decode_membership_body", "encode_membership_body"]

MEMBERSHIP_DOMAIN = "samen-space/1"


@dataclass(frozen=True, slots=True)
class MembershipBody:
    home: str
    space: str
    version: int
    title: str
    description: str
    join_policy: str
    visibility: str
    archived: bool
    default_role: str
    sites: tuple[str, ...]
    members: tuple[tuple[str, str], ...]  # (person, role), by person


def encode_membership_body(body: MembershipBody) -> bytes:
    encoder = Encoder().write_var_string(MEMBERSHIP_DOMAIN).write_var_string(body.home)
    encoder.write_var_string(body.space).write_var_uint(body.version)
    encoder.write_var_string(body.title).write_var_string(body.description)
    encoder.write_var_string(body.join_policy).write_var_string(body.visibility)
    encoder.write_var_uint(int(body.archived)).write_var_string(body.default_role)
    encoder.write_var_uint(len(body.sites))
    for site in body.sites:
        encoder.write_var_string(site)
    encoder.write_var_uint(len(body.members))
    for person, role in body.members:
        encoder.write_var_string(person).write_var_string(role)
    return encoder.to_bytes()


def decode_membership_body(data: bytes) -> MembershipBody:
    decoder = Decoder(data)
    if decoder.read_var_string() != MEMBERSHIP_DOMAIN:
        raise ProtocolError(f"not a {MEMBERSHIP_DOMAIN} body")
    home, space, version = decoder.read_var_string(), decoder.read_var_string(), decoder.read_var_uint()
    title, description = decoder.read_var_string(), decoder.read_var_string()
    join_policy, visibility = decoder.read_var_string(), decoder.read_var_string()
    archived = decoder.read_var_uint()
    if archived > 1:
        raise ProtocolError("archived must be 0 or 1")
    default_role = decoder.read_var_string()
    count = decoder.read_var_uint()
    if count > decoder.remaining:  # every string takes at least its length byte
        raise ProtocolError("membership claims more sites than it holds")
    sites = tuple(decoder.read_var_string() for _ in range(count))
    count = decoder.read_var_uint()
    if count * 2 > decoder.remaining:
        raise ProtocolError("membership claims more members than it holds")
    members = tuple((decoder.read_var_string(), decoder.read_var_string()) for _ in range(count))
    if not decoder.at_end():
        raise ProtocolError("trailing bytes after the membership")
    return MembershipBody(
        home, space, version, title, description, join_policy, visibility, bool(archived), default_role,
        sites, members,
    )  # fmt: skip
