"""The sessions of this node, by principal and by document, and revocation: when someone's
access may have changed (a member removed, a role lowered, a token revoked, a person
suspended, a space archived), every matching session on every node of the site has its
access checked again and is closed or downgraded.

Revoking is "check again", not "take this away": the authorizer reads the current state,
so one path serves every kind of change. While a session is checked, its updates are held
(see `ClientSession.hold`), so nothing it sends after the revocation is applied under the
old grant. A grant never goes up on a live session: one that may now write reconnects.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from itertools import islice

from protocol.backplane import (
    BackplaneKind,
    BackplaneMessage,
    Revocation,
    decode_revocation,
    encode_revocation,
)
from protocol.errors import ProtocolError

from .auth.ports import Authenticator, Authorizer, Grant, Unauthenticated
from .backplane.ports import Backplane
from .close_codes import CloseCode
from .control import ControlChannels, control_channel
from .session import ClientSession

__all__ = ["REVOKE_CHANNEL", "Revocation", "SessionRegistry"]

log = logging.getLogger(__name__)

REVOKE_CHANNEL = control_channel("revoke")
# Revocations remembered for sessions whose access was decided just before them but that
# registered just after (see `epoch`); one that is older than all of them is checked anyway.
_RECENT = 1024


class SessionRegistry:
    def __init__(
        self,
        authenticator: Authenticator,
        authorizer: Authorizer,
        backplane: Backplane,
        control: ControlChannels,
    ) -> None:
        self._authenticator = authenticator
        self._authorizer = authorizer
        self._backplane = backplane
        self._by_principal: dict[str, set[ClientSession]] = {}
        self._by_document: dict[str, set[ClientSession]] = {}
        self._checks: deque[ClientSession] = deque()
        self._checks_ready = asyncio.Event()
        self._recent: deque[Revocation] = deque(maxlen=_RECENT)
        self._listeners: list[Callable[[Revocation], None]] = []
        self.revocations = 0
        self.sessions_closed = 0
        self.sessions_downgraded = 0
        control.register(REVOKE_CHANNEL, self._on_control)

    # -- membership ----------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """Read it before asking the authorizer for a session, and pass it to `add`: a
        revocation that lands between the answer and the registration is not missed."""
        return self.revocations

    def add(self, session: ClientSession, epoch: int | None = None) -> None:
        self._by_principal.setdefault(session.principal.id, set()).add(session)
        self._by_document.setdefault(session.document, set()).add(session)
        if epoch is None or epoch == self.revocations:
            return
        missed = self.revocations - epoch
        recent = list(islice(reversed(self._recent), missed)) if missed <= len(self._recent) else None
        if recent is None or any(_matches(session, revocation) for revocation in recent):
            self._schedule(session)

    def remove(self, session: ClientSession) -> None:
        _discard(self._by_principal, session.principal.id, session)
        _discard(self._by_document, session.document, session)

    def sessions_of(self, principal: str) -> set[ClientSession]:
        return set(self._by_principal.get(principal, ()))

    def sessions_on(self, document: str) -> set[ClientSession]:
        return set(self._by_document.get(document, ()))

    def __len__(self) -> int:
        return sum(len(sessions) for sessions in self._by_document.values())

    # -- revocation ----------------------------------------------------------------------

    async def run(self) -> None:
        """The task that checks held sessions again; owned by the app lifespan."""
        await self._backplane.subscribe(REVOKE_CHANNEL)
        while True:
            if not self._checks:
                self._checks_ready.clear()
                await self._checks_ready.wait()
                continue
            session = self._checks.popleft()
            try:
                await self._check(session)
            except Exception:
                # Fail closed: a check that cannot be made must not leave the old grant.
                log.exception("checking the access of %r failed; closing it", session)
                session.close(CloseCode.INTERNAL_ERROR, "access could not be checked")

    def add_listener(self, listener: Callable[[Revocation], None]) -> None:
        """`listener` hears every revocation this node applies (the federated spaces hold
        back a revoked author's updates from peers until they reloaded the roles)."""
        self._listeners.append(listener)

    def revoke(self, revocation: Revocation) -> int:
        """Check the matching sessions of every node again (this one at once); returns how
        many sessions of this node match."""
        self._backplane.publish(REVOKE_CHANNEL, BackplaneKind.REVOKE, encode_revocation(revocation))
        return self.revoke_local(revocation)

    def _on_control(self, message: BackplaneMessage) -> None:
        if message.kind != BackplaneKind.REVOKE:
            return
        try:
            revocation = decode_revocation(message.payload)
        except ProtocolError as exc:
            log.warning("bad revocation from node %s: %s", message.origin, exc.reason)
            return
        self.revoke_local(revocation)

    def revoke_local(self, revocation: Revocation) -> int:
        """Check the matching sessions of this node only (the others heard of it already)."""
        self.revocations += 1
        self._recent.append(revocation)
        for listener in self._listeners:
            listener(revocation)
        matching = [s for s in self._candidates(revocation) if _matches(s, revocation)]
        for session in matching:
            self._schedule(session)
        return len(matching)

    def _schedule(self, session: ClientSession) -> None:
        session.hold()
        self._checks.append(session)
        self._checks_ready.set()

    def _candidates(self, revocation: Revocation) -> set[ClientSession]:
        if revocation.principal:
            return self.sessions_of(revocation.principal)
        return {s for sessions in self._by_document.values() for s in sessions}

    async def _check(self, session: ClientSession) -> None:
        if session not in self._by_document.get(session.document, ()):
            return  # it left meanwhile
        # Whatever took the access away (a token revoked, a person suspended, a member
        # removed), the session's access is revoked: 4403, as the client was signed in.
        try:
            principal = await self._authenticator.authenticate(session.credentials)
        except Unauthenticated as exc:
            self._close(session, CloseCode.FORBIDDEN, exc.reason)
            return
        if principal.id != session.principal.id:
            self._close(session, CloseCode.FORBIDDEN, "signed out")
            return
        grant = await self._authorizer.authorize(principal, session.document)
        if grant == Grant.NONE:
            self._close(session, CloseCode.FORBIDDEN, "access to this document was revoked")
            return
        if grant < session.grant:
            self.sessions_downgraded += 1
            log.info("%r downgraded to %s", session, grant.name)
        session.release(grant)

    def _close(self, session: ClientSession, code: int, reason: str) -> None:
        self.sessions_closed += 1
        log.info("%r closed: %s", session, reason)
        session.close(code, reason)


def _matches(session: ClientSession, revocation: Revocation) -> bool:
    return (
        (not revocation.principal or session.principal.id == revocation.principal)
        and (not revocation.token or session.principal.token_id == revocation.token)
        and (not revocation.prefix or session.document.startswith(revocation.prefix))
    )


def _discard(index: dict[str, set[ClientSession]], key: str, session: ClientSession) -> None:
    sessions = index.get(key)
    if sessions is not None:
        sessions.discard(session)
        if not sessions:
            del index[key]
