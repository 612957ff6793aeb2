"""Where an update came from, and what that means for it: one table instead of one method
per source (DESIGN.md, "The client session and its hooks").

Every update a room applies carries one of these origins. `POLICY` says, for each kind,
whether this node stores it, how it travels to the other nodes of the site, whether it is
held in memory until its origin node confirms it durable, and whether the caller is
acknowledged once it is durable. `Room.apply` reads the table; nothing else decides.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from enum import Enum

from .store.ports import LOCAL_ORIGIN

__all__ = [
    "POLICY",
    "STORE_ORIGIN",
    "ClientOrigin",
    "NodeOrigin",
    "Origin",
    "Policy",
    "Publish",
    "ServerOrigin",
    "SiteOrigin",
    "StoreOrigin",
    "policy_of",
]


@dataclass(frozen=True, slots=True, eq=False)
class ClientOrigin:
    """A client session on this node; `author` is its principal's id ("" when anonymous).
    Compared by identity: each session has exactly one, made when it starts."""

    session: Hashable
    author: str

    @property
    def site(self) -> str:
        return LOCAL_ORIGIN


@dataclass(frozen=True, slots=True)
class NodeOrigin:
    """Another node of this site, over the backplane. `site` is where the update was made
    (LOCAL_ORIGIN, or the peer site it was replicated from), so whoever stores it keeps it."""

    node: str
    seq: int  # the node's backplane sequence number; 0 for updates that came from a repair
    author: str
    site: str = LOCAL_ORIGIN


@dataclass(frozen=True, slots=True)
class SiteOrigin:
    """A peer site, over a site link; `author` is the principal the batch names."""

    site: str
    author: str


@dataclass(frozen=True, slots=True)
class StoreOrigin:
    """Read back from the store (a repair): durable already."""

    @property
    def author(self) -> str:
        return ""

    @property
    def site(self) -> str:
        return LOCAL_ORIGIN


@dataclass(frozen=True, slots=True)
class ServerOrigin:
    """The server editing a document itself (restore, import, rollback) for `actor`."""

    actor: str
    reason: str = ""

    @property
    def author(self) -> str:
        return self.actor

    @property
    def site(self) -> str:
        return LOCAL_ORIGIN


Origin = ClientOrigin | NodeOrigin | SiteOrigin | StoreOrigin | ServerOrigin

STORE_ORIGIN = StoreOrigin()


class Publish(Enum):
    """How an update goes to the other nodes of the site."""

    NOTHING = "nothing"  # they have it already, or its origin node tells them
    UPDATE = "update"  # made at this site
    SITE_UPDATE = "site-update"  # replicated from a peer site (the nodes keep its origin)


@dataclass(frozen=True, slots=True)
class Policy:
    store: bool  # this node appends it to the store (with its origin site and author)
    publish: Publish
    keep_unconfirmed: bool  # held until the origin node says it is durable (it may die first)
    acknowledge: bool  # the caller's `on_durable` runs once the update is durable


POLICY: dict[type, Policy] = {
    ClientOrigin: Policy(store=True, publish=Publish.UPDATE, keep_unconfirmed=False, acknowledge=True),
    ServerOrigin: Policy(store=True, publish=Publish.UPDATE, keep_unconfirmed=False, acknowledge=True),
    SiteOrigin: Policy(store=True, publish=Publish.SITE_UPDATE, keep_unconfirmed=False, acknowledge=True),
    NodeOrigin: Policy(store=False, publish=Publish.NOTHING, keep_unconfirmed=True, acknowledge=False),
    StoreOrigin: Policy(store=False, publish=Publish.NOTHING, keep_unconfirmed=False, acknowledge=False),
}


def policy_of(origin: Origin) -> Policy:
    return POLICY[type(origin)]
