"""Who may write which Yjs client id in a room (no one squats another client's clocks).

Every struct of a Yjs update is named (client id, clock), and a document keeps the first
struct it sees under a name. Client ids are public (every state vector and presence entry
carries them), so a client that writes structs under another client's id, at the clocks
that client will use next, makes that client's next edits look "already known": they
would be acknowledged and never stored. So a client id belongs to the session that first
wrote it (with authentication: to the principal, on every session and node), and a session
may not write a client id that belongs to someone else.

The table is per room and in memory: it protects every client while the room is open.
Without authentication, a client id is free again once its session left.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from crdt.update_format import UpdateSummary

from .hooks import Refused
from .origins import ClientOrigin, NodeOrigin, SiteOrigin

__all__ = ["WriterTable"]

Holder = Callable[[int], Hashable | None]


def _author_of(session: Hashable) -> str:
    principal = getattr(session, "principal", None)
    return str(getattr(principal, "id", "")) if principal is not None else ""


def _same_author(session: Hashable, author: str) -> bool:
    return bool(author) and _author_of(session) == author


class WriterTable:
    __slots__ = ("_by_author", "_by_session")

    def __init__(self) -> None:
        self._by_session: dict[int, Hashable] = {}  # anonymous writers, while connected
        self._by_author: dict[int, str] = {}  # authenticated writers, while the room is open

    def check(self, summary: UpdateSummary, origin: ClientOrigin, presence_holder: Holder) -> None:
        """Raise `Refused` (cutting the sender off) if the update writes a client id that
        belongs to another session or principal (deletions name no writer), here or in the
        room's presence (`presence_holder(client)`: the connection holding that id there)."""
        for client in summary.structs:
            holder = presence_holder(client)
            if (
                holder is not None
                and holder is not origin.session
                and not _same_author(holder, origin.author)
            ):
                raise Refused(
                    f"client id {client} belongs to another connection",
                    kind="foreign_client_id",
                    cut_off=True,
                )
            owner = self._by_author.get(client)
            if owner is not None and owner != origin.author:
                raise Refused(
                    f"client id {client} belongs to another user", kind="foreign_client_id", cut_off=True
                )
            session = self._by_session.get(client)
            if session is not None and session is not origin.session and not (origin.author and owner):
                raise Refused(
                    f"client id {client} belongs to another connection",
                    kind="foreign_client_id",
                    cut_off=True,
                )

    def check_site(self, summary: UpdateSummary, origin: SiteOrigin, presence_holder: Holder) -> None:
        """Raise `Refused` if an update from a peer site writes a client id that a connection
        of this site holds (as a writer, or in the room's presence) or that another person
        writes: a peer could otherwise squat a local user's next clocks, and that user's
        later edits would be acknowledged as "already known" and never stored or relayed."""
        for client in summary.structs:
            owner = self._by_author.get(client)
            if (
                presence_holder(client) is not None
                or client in self._by_session
                or (owner is not None and owner != origin.author)
            ):
                raise Refused(
                    f"client id {client} belongs to a user of this site", kind="foreign_client_id"
                )

    def claim(self, summary: UpdateSummary, origin: ClientOrigin) -> None:
        """Record the writers of an update that `check` let through and that was applied."""
        for client in summary.structs:
            if origin.author:
                self._by_author.setdefault(client, origin.author)
            self._by_session.setdefault(client, origin.session)

    def claim_remote(self, summary: UpdateSummary, origin: NodeOrigin) -> None:
        """An authenticated user's update from another node: their client ids are theirs
        here too. (Anonymous ones are not: a client that reconnects to this node after its
        node died would otherwise be refused until that node's presence timed out.)"""
        if origin.author:
            for client in summary.structs:
                self._by_author.setdefault(client, origin.author)

    def may_claim_presence(self, client: int, session: Hashable) -> bool:
        """May `session` take `client` as its presence id? Not if another session or person
        writes the document under it."""
        author = _author_of(session)
        owner = self._by_author.get(client)
        if owner is not None and owner != author:
            return False
        writer = self._by_session.get(client)
        return writer is None or writer is session or (bool(author) and owner == author)

    def release(self, session: Hashable) -> None:
        """`session` left: the anonymous client ids it wrote are free again."""
        for client in [c for c, owner in self._by_session.items() if owner is session]:
            del self._by_session[client]

    def owner_session(self, client: int) -> Hashable | None:
        return self._by_session.get(client)
