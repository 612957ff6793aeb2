"""Federated spaces on a node: what the links share, who may write, and the signed
memberships that travel between a space's home and its other sites.

`FederatedSpaces` keeps in memory every federated space of the store (its home, sites,
members: `SharedSpace`), reloaded when a space's version changes (polled every
`POLL_SECONDS`, at once after a revocation), so that

- the replication scope follows the store (`ReplicationScope.set_federated`): a space's
  documents travel between all the sites of the space;
- `check_update`, a `before_apply` hook, checks the author of every update from a peer site
  against the space's roles with no query (`space_federation.site_update_refusal`), and
  refuses (logs, counts, stores nothing) what may not be written. Between a revocation and
  the reload that follows, the revoked author's updates are refused: fail closed;
- each link sends the peer the memberships of this site's spaces shared with it (all at
  link-up, then each new version, signed with the site key), and applies those the peer
  sends for spaces it is the home of (`SpaceFederation.apply`): refused ones (bad signature,
  not from the home, a space not expected from it, invalid) are logged, counted and stored
  nowhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from protocol.backplane import Revocation
from protocol.errors import ProtocolError
from protocol.sitelink import Membership, SiteLinkMessage
from protocol.space_membership import decode_membership_body, encode_membership_body

from ..domain.space_federation import (
    MembershipRefused,
    SharedSpace,
    SpaceFederation,
    UpdateRefusal,
    site_update_refusal,
)
from ..domain.spaces import space_of
from ..errors import StoreError
from ..hooks import Refused, UpdateContext
from ..origins import SiteOrigin
from .identity import SiteIdentity
from .peers import Peer, ReplicationScope

__all__ = ["POLL_SECONDS", "FederatedSpaces"]

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25  # a membership change reaches the links within this (plus a query)
_EVERYONE = ""  # a revocation of a whole space (archived, policy changed)


class FederatedSpaces:
    def __init__(self, federation: SpaceFederation, identity: SiteIdentity, scope: ReplicationScope) -> None:
        self._federation = federation
        self._identity = identity
        self._scope = scope
        self.site = identity.site_id
        self.shared: dict[str, SharedSpace] = {}
        self._versions: dict[str, int] = {}
        # Revoked (space, person) pairs until the reload that follows: refused meanwhile.
        self._checking: dict[str, set[str]] = {}
        self._wake = asyncio.Event()
        self._generation = 0
        self._changed = asyncio.Condition()
        self.ready = asyncio.Event()
        self.updates_refused: Counter[str] = Counter()
        self.memberships_refused: Counter[str] = Counter()
        self.memberships_applied = 0

    # -- following the store -------------------------------------------------------------

    async def refresh(self) -> set[str]:
        """Reload the spaces whose version changed (or that a revocation named); returns the
        peers that now share spaces they did not (their links must send those whole)."""
        checking = {slug: set(people) for slug, people in self._checking.items()}
        versions = await self._federation.versions()
        stale = [s for s, v in versions.items() if self._versions.get(s) != v or s in checking]
        if not stale and versions.keys() == self._versions.keys():
            self.ready.set()
            return set()
        shared = {slug: space for slug, space in self.shared.items() if slug in versions}
        shared.update(await self._federation.load(stale))
        before = self._by_peer()
        self.shared = shared
        self._versions = {slug: space.version for slug, space in shared.items()}
        for slug, people in checking.items():  # marks made during the reload stay
            left = self._checking.get(slug, set()) - people
            if left:
                self._checking[slug] = left
            else:
                self._checking.pop(slug, None)
        self._scope.set_federated({slug: space.participants(self.site) for slug, space in shared.items()})
        self.ready.set()
        async with self._changed:
            self._generation += 1
            self._changed.notify_all()
        after = self._by_peer()
        return {peer for peer, spaces in after.items() if spaces - before.get(peer, frozenset())}

    def _by_peer(self) -> dict[str, frozenset[str]]:
        peers: dict[str, set[str]] = {}
        for slug, space in self.shared.items():
            for peer in space.participants(self.site):
                peers.setdefault(peer, set()).add(slug)
        return {peer: frozenset(slugs) for peer, slugs in peers.items()}

    async def changes(self) -> set[str]:
        """Wait for the next poll (or a wake-up) and refresh; the peers whose share grew.
        A store that is away is retried at the next poll."""
        try:
            async with asyncio.timeout(POLL_SECONDS):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()
        try:
            return await self.refresh()
        except StoreError as exc:
            log.warning("federated spaces: cannot read the store: %s", exc)
            return set()

    def on_revocation(self, revocation: Revocation) -> None:
        """A registry listener: someone's access to a space may have gone down. Their updates
        from peers are refused until the space is reloaded, which happens at once."""
        if not revocation.prefix.endswith("/"):
            return  # a person or a token: per site, their own site closes their sessions
        slug = revocation.prefix[:-1]
        if slug in self.shared:
            self._checking.setdefault(slug, set()).add(revocation.principal or _EVERYONE)
            self._wake.set()

    # -- updates from peers (the before_apply hook) ----------------------------------------

    def check_update(self, context: UpdateContext) -> None:
        origin = context.origin
        if not isinstance(origin, SiteOrigin):
            return
        slug = space_of(context.document_name)
        shared = self.shared.get(slug) if slug is not None else None
        checking = self._checking.get(slug, ()) if slug is not None else ()
        reason = site_update_refusal(shared, origin.site, origin.author)
        if reason is None and shared is not None and origin.site != shared.home:
            # The home's updates are never held back: it decides, and it sent the change.
            if origin.author in checking or _EVERYONE in checking:
                reason = UpdateRefusal.CHECKING
        if reason is None:
            return
        self.updates_refused[reason.value] += 1
        log.warning(
            "refused an update of %r from site %s by %r: %s",
            context.document_name[:200], origin.site, origin.author[:200], reason.value,
        )  # fmt: skip
        raise Refused(f"update refused: {reason.value}", kind=f"site_{reason.value}")

    # -- memberships over the links --------------------------------------------------------

    async def send_to(self, peer: str, send: Callable[[SiteLinkMessage], None]) -> None:
        """For one link's lifetime: send `peer` the membership of every space of this site
        shared with it, and each new version."""
        sent: dict[str, int] = {}
        while True:
            generation = self._generation
            for slug, space in list(self.shared.items()):
                if space.home != self.site or peer not in space.sites or sent.get(slug) == space.version:
                    continue
                body = await self._federation.membership(slug)
                if body is None:
                    continue
                signed = encode_membership_body(body)
                send(Membership(signed, self._identity.sign(signed)))
                sent[slug] = body.version
            async with self._changed:
                await self._changed.wait_for(lambda: self._generation != generation)  # noqa: B023

    async def receive(self, peer: Peer, message: Membership) -> None:
        """A membership from `peer`: applied if it is signed by the space's home and sent by
        it, and newer than the copy; else refused. A store that is away raises `StoreError`
        (the link drops; the home sends it again at the next link-up)."""
        if not peer.public_key.verify(message.signature, message.body):
            self._refuse(peer.site_id, "bad_signature", "signature does not verify", "?")
            return
        try:
            body = decode_membership_body(message.body)
        except ProtocolError as exc:
            self._refuse(peer.site_id, "malformed", exc.reason, "?")
            return
        try:
            applied = await self._federation.apply(body, peer.site_id)
        except MembershipRefused as exc:
            self._refuse(peer.site_id, exc.kind, exc.message, body.space)
            return
        if applied is None:
            log.debug(
                "membership of %r version %d from %s: applied already", body.space, body.version, peer.site_id
            )
            return
        self.memberships_applied += 1
        log.info(
            "applied the membership of %r version %d from its home %s", body.space, body.version, peer.site_id
        )
        self._wake.set()

    def _refuse(self, peer: str, kind: str, reason: str, space: str) -> None:
        self.memberships_refused[kind] += 1
        log.warning("refused a membership of %r from site %s: %s", space[:100], peer, reason[:200])

    # -- metrics -----------------------------------------------------------------------------

    def metric_families(self) -> Iterator[Metric]:
        yield _labelled(
            "samen_site_updates_refused",
            "Updates from peer sites refused by the space rules, by reason",
            self.updates_refused,
        )
        yield _labelled(
            "samen_site_memberships_refused",
            "Space memberships from peer sites refused (forged, not from the home, invalid), by reason",
            self.memberships_refused,
        )
        yield CounterMetricFamily(
            "samen_site_memberships_applied",
            "Space memberships from their home sites applied here",
            value=self.memberships_applied,
        )
        yield GaugeMetricFamily(
            "samen_federated_spaces", "Federated spaces this site holds", value=len(self.shared)
        )


def _labelled(name: str, help_text: str, counts: Mapping[str, int]) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=["reason"])
    for reason, count in sorted(counts.items()):
        family.add_metric([reason], float(count))
    return family
