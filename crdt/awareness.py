"""The awareness (presence) table of one room: y-protocols' clock rules, plus ownership and limits.

Clock rules (y-protocols awareness.js): an entry is accepted when its clock is newer than the
one known for that client, or equal with a `null` state while the client is present (a
removal). Unknown clients count as clock 0, so a fresh client's first `{}` at clock 0 is ignored.

Ownership (beyond the reference server, which lets anyone overwrite or remove anyone): a
client id belongs to the owner that introduced it, first come. Only that owner may set, renew
or remove it; entries for it from anyone else are dropped and counted. Otherwise any
connection could overwrite others' presence, or push a victim's clock to 2^53 - 1, which
y-protocols answers with 2^53 forever after.
- A local owner (a connection) holds its ids until it leaves (`remove_owned_by`), also while
  their state is removed, or until a state of theirs expires (it was not renewed, so the
  owner is not speaking for it any more: a reconnected client gets its id back that way).
- Remote owners (`RemoteOwner`: another node, a peer site; or None) stand for many clients
  checked where they are connected. Among themselves an id moves with the clock rules, as
  before; a removal releases it. Between a local and a remote owner the id is exclusive both
  ways, so an attacker on another node cannot change the presence of a client connected here.
A released id keeps its clock for one timeout (a tombstone), so a late re-send of its last
state (providers echo every change they apply) cannot bring a ghost back.

Limits (`AwarenessLimits`, all optional) bound the work and memory one local owner can cause:
entries per update (checked before any entry is decoded), client ids held, bytes per state,
accepted entries per second (a token bucket; removals are free). What exceeds a limit is
dropped and counted, never a reason to close: stale re-sends are normal traffic.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from protocol.awareness import (
    NULL_STATE,
    AwarenessEntry,
    AwarenessLimitExceeded,
    RawAwarenessEntry,
    decode_raw_awareness_update,
    encode_awareness_update,
    validate_entry,
)

__all__ = [
    "DROP_NOT_OWNER",
    "DROP_RATE",
    "DROP_STATE_SIZE",
    "DROP_TOO_MANY_CLIENTS",
    "DROP_TOO_MANY_ENTRIES",
    "UNLIMITED",
    "AwarenessChange",
    "AwarenessLimits",
    "AwarenessTable",
    "RemoteOwner",
]

DROP_NOT_OWNER = "not_owner"
DROP_TOO_MANY_ENTRIES = "too_many_entries"
DROP_STATE_SIZE = "state_too_big"
DROP_TOO_MANY_CLIENTS = "too_many_clients"
DROP_RATE = "rate"
_LIMIT_REASONS = {"entries": DROP_TOO_MANY_ENTRIES, "state_size": DROP_STATE_SIZE}


class RemoteOwner:
    """Base of owners that stand for clients connected elsewhere (another node, a peer site)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class AwarenessLimits:
    """Per local owner, except `max_state_bytes` (everyone). None: no limit."""

    max_entries: int | None = None  # entries in one update
    max_clients: int | None = None  # client ids held at once
    max_state_bytes: int | None = None  # bytes of one JSON state
    rate: float | None = None  # accepted entries per second, sustained
    burst: float | None = None  # accepted at once after a quiet spell; default 2 s of `rate`


UNLIMITED = AwarenessLimits()


@dataclass(slots=True)
class AwarenessChange:
    added: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    # The bytes to relay: the sender's own update when every entry was accepted, otherwise
    # the accepted entries re-encoded (states verbatim). None when nothing was accepted.
    update: bytes | None = None
    dropped: int = 0  # entries (or whole updates, for a count over the limit) refused

    @property
    def changed(self) -> bool:
        return self.update is not None


@dataclass(slots=True)
class _Client:
    clock: int
    owner: Hashable | None
    state: str | None  # None: removed, the id still reserved for its local owner
    seen: float


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def _is_remote(owner: Hashable | None) -> bool:
    return owner is None or isinstance(owner, RemoteOwner)


class AwarenessTable:
    """States by client id. The server never has a state of its own."""

    def __init__(self, limits: AwarenessLimits = UNLIMITED, drops: Counter[str] | None = None) -> None:
        self._limits = limits
        self._burst = max(1.0, limits.burst if limits.burst is not None else 2 * (limits.rate or 0))
        self._now = 0.0  # the latest time a caller gave: when `remove_owned_by` releases ids
        # Shared by every table of a node, so /metrics can count drops after rooms unload.
        self._drops: Counter[str] = drops if drops is not None else Counter()
        self._clients: dict[int, _Client] = {}
        self._states: dict[int, str] = {}  # the present ones, in the order they arrived
        self._owned: dict[Hashable | None, set[int]] = {}
        self._tombstones: dict[int, tuple[int, float]] = {}  # released id -> (clock, when)
        self._buckets: dict[Hashable | None, _Bucket] = {}
        # Entries held back by the rate limit, latest per client: relayed by `expire`.
        self._deferred: dict[int, AwarenessEntry] = {}
        self._all: bytes | None = None
        self._all_valid = True
        # Who else may say a client id is taken: in a room, a client id that a connection
        # writes to the document is that connection's for presence too (a Yjs client's
        # document and presence share one id). Called for ids nobody holds here yet.
        self.claimable: Callable[[int, Hashable], bool] | None = None
        # Rewrites the states a connection sets for its own ids (e.g. the server writes who
        # the connection is into them, so nobody appears as someone else).
        self.vouch: Callable[[Hashable, str], str] | None = None

    @property
    def states(self) -> dict[int, str]:
        """Present clients and their JSON states (read-only view by convention)."""
        return self._states

    def __len__(self) -> int:
        return len(self._states)

    # -- applying updates ----------------------------------------------------------------

    def apply(self, update: bytes, owner: Hashable | None, now: float) -> AwarenessChange:
        """Apply an encoded update from `owner` (a connection; a `RemoteOwner` or None for
        another node or site). Raises `protocol.ProtocolError` if it is malformed; nothing is
        applied then. Entries beyond ownership or limits are dropped and counted."""
        remote = _is_remote(owner)
        limits = self._limits
        self._now = max(self._now, now)
        try:
            raw = decode_raw_awareness_update(
                update,
                max_entries=None if remote else limits.max_entries,
                max_state_bytes=limits.max_state_bytes,
            )
        except AwarenessLimitExceeded as exc:
            self._drops[_LIMIT_REASONS[exc.what]] += 1
            return AwarenessChange(dropped=1)
        plan = _Plan(self, owner, remote, now)
        for entry in raw:
            plan.consider(entry)  # may raise ProtocolError: nothing was changed yet
        verbatim = len(plan.accepted) == len(raw) and not plan.rewritten
        return self._commit(plan, owner, now, update if verbatim else None)

    def _commit(
        self, plan: _Plan, owner: Hashable | None, now: float, original: bytes | None
    ) -> AwarenessChange:
        change = AwarenessChange(dropped=sum(plan.drops.values()))
        self._drops.update(plan.drops)
        if plan.bucket is not None:
            self._buckets[owner] = plan.bucket
        self._deferred.update(plan.deferred)
        for entry in plan.accepted:
            self._deferred.pop(entry.client_id, None)
            client = entry.client_id
            record = self._clients.get(client)
            was_known = record is not None or client in self._tombstones
            if entry.is_removal:
                if record is None:
                    continue  # `_Plan` only accepts removals of recorded clients
                record.clock, record.seen = entry.clock, now
                if record.state is not None:
                    record.state = None
                    del self._states[client]
                change.removed.append(client)
                if _is_remote(record.owner):
                    self._release(client, now)
                continue
            if record is None:
                self._tombstones.pop(client, None)
                record = self._clients[client] = _Client(entry.clock, owner, None, now)
                self._owned.setdefault(owner, set()).add(client)
            elif record.owner != owner:  # between remote owners, an id moves with its clock
                self._disown(client, record.owner)
                record.owner = owner
                self._owned.setdefault(owner, set()).add(client)
            record.clock, record.state, record.seen = entry.clock, entry.state_json, now
            self._states[client] = entry.state_json
            (change.updated if was_known else change.added).append(client)
        if plan.accepted:
            self._all_valid = False
            change.update = original or encode_awareness_update(plan.accepted)
        return change

    # -- removing ------------------------------------------------------------------------

    def remove_owned_by(self, owner: Hashable) -> AwarenessChange:
        """Remove every client `owner` holds (its connection closed) and release the ids."""
        clients = list(self._owned.get(owner, ()))
        self._buckets.pop(owner, None)
        return self._remove(clients, self._now)

    def expire(self, now: float, timeout: float) -> AwarenessChange:
        """Remove clients that have not renewed their state for `timeout` seconds (and
        release their ids); forget tombstones older than that. Also relays the states the
        rate limit held back, where their owner has the allowance again: the change may
        hold updated clients besides the removed ones."""
        self._now = max(self._now, now)
        for client, (_, when) in list(self._tombstones.items()):
            if now - when < timeout:
                break  # in release order, so the rest are younger
            del self._tombstones[client]
        stale = [c for c in self._states if now - self._clients[c].seen >= timeout]
        change = self._remove(stale, now)
        released = self._flush_deferred(now)
        if released:
            removals = [AwarenessEntry(c, self.clock_of(c), NULL_STATE) for c in change.removed]
            change.updated = [e.client_id for e in released]
            change.update = encode_awareness_update(removals + released)
            self._all_valid = False
        return change

    def _flush_deferred(self, now: float) -> list[AwarenessEntry]:
        rate = self._limits.rate or 0.0
        released = []
        for client, entry in list(self._deferred.items()):
            record = self._clients.get(client)
            if record is None or record.clock >= entry.clock:
                del self._deferred[client]  # released, or overtaken by a newer state
                continue
            bucket = self._buckets.get(record.owner)
            if bucket is not None:
                bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * rate)
                bucket.at = now
                if bucket.tokens < 1:
                    continue
                bucket.tokens -= 1
            del self._deferred[client]
            record.clock, record.state, record.seen = entry.clock, entry.state_json, now
            self._states[client] = entry.state_json
            released.append(entry)
        return released

    def _remove(self, clients: list[int], now: float) -> AwarenessChange:
        # Removal keeps the clock: receivers accept `null` at an equal clock for a present client.
        entries = []
        for client in clients:
            record = self._clients[client]
            if record.state is not None:
                entries.append(AwarenessEntry(client, record.clock, NULL_STATE))
            self._release(client, now)
        if not entries:
            return AwarenessChange()
        self._all_valid = False
        return AwarenessChange(
            removed=[e.client_id for e in entries], update=encode_awareness_update(entries)
        )

    def _release(self, client: int, now: float) -> None:
        self._deferred.pop(client, None)
        record = self._clients.pop(client)
        self._states.pop(client, None)
        self._disown(client, record.owner)
        self._tombstones.pop(client, None)  # re-inserted last: tombstones stay in release order
        self._tombstones[client] = (record.clock, now)

    def _disown(self, client: int, owner: Hashable | None) -> None:
        owned = self._owned.get(owner)
        if owned is not None:
            owned.discard(client)
            if not owned:
                del self._owned[owner]

    # -- reading -------------------------------------------------------------------------

    def encode_all(self) -> bytes | None:
        """Every present state, for a newly joined connection; None if there are none.
        Kept until the table changes: a burst of joiners shares one encoding."""
        if not self._all_valid:
            self._all = self.encode_clients(list(self._states))
            self._all_valid = True
        return self._all

    def encode_clients(self, clients: list[int]) -> bytes | None:
        """The present states of `clients` as one update; None if none is present."""
        entries = [
            AwarenessEntry(c, self._clients[c].clock, self._states[c]) for c in clients if c in self._states
        ]
        return encode_awareness_update(entries) if entries else None

    def clock_of(self, client: int) -> int:
        record = self._clients.get(client)
        if record is not None:
            return record.clock
        tombstone = self._tombstones.get(client)
        return tombstone[0] if tombstone is not None else 0

    def owners(self) -> dict[int, Hashable | None]:
        """The owner of each present client (a new dict)."""
        return {client: self._clients[client].owner for client in self._states}

    def holder_of(self, client: int) -> Hashable | None:
        """The connection that holds `client` here; None if nobody or a remote owner does."""
        record = self._clients.get(client)
        if record is None or _is_remote(record.owner):
            return None
        return record.owner

    def owned_by(self, owner: Hashable | None) -> set[int]:
        """The client ids `owner` holds, present or removed (a new set)."""
        return set(self._owned.get(owner, ()))


class _Plan:
    """What one update would change, decided before anything changes (so a malformed entry
    late in the update leaves the table as it was)."""

    def __init__(self, table: AwarenessTable, owner: Hashable | None, remote: bool, now: float) -> None:
        self._table = table
        self._owner = owner
        self._remote = remote
        self._now = now
        self.accepted: list[AwarenessEntry] = []
        self.drops: Counter[str] = Counter()
        # Effects of earlier entries of this update: client -> (clock, present, owner).
        self._seen: dict[int, tuple[int, bool, Hashable | None]] = {}
        self._new_ids = 0
        self.bucket: _Bucket | None = None
        self.deferred: dict[int, AwarenessEntry] = {}
        self.rate_limited = False  # set by the last `_within_limits` that said no for the rate
        self.rewritten = False  # a state was changed by the table's `vouch`
        limits = table._limits
        if not remote and limits.rate is not None:
            held = table._buckets.get(owner)
            if held is None:
                self.bucket = _Bucket(table._burst, now)
            else:  # a copy, refilled: committed only with the rest of the plan
                tokens = min(table._burst, held.tokens + (now - held.at) * limits.rate)
                self.bucket = _Bucket(tokens, now)

    def consider(self, entry: RawAwarenessEntry) -> None:
        table, owner, client = self._table, self._owner, entry.client_id
        known = self._seen.get(client)
        if known is None:
            record = table._clients.get(client)
            if record is not None:
                known = (record.clock, record.state is not None, record.owner)
            else:
                tombstone = table._tombstones.get(client)
                known = (tombstone[0] if tombstone else 0, False, _UNOWNED)
        clock, present, holder = known
        removal = entry.is_removal
        if not (clock < entry.clock or (clock == entry.clock and removal and present)):
            return  # stale: most often a provider re-sending what the server sent it
        if holder is not _UNOWNED and holder != owner and not (self._remote and _is_remote(holder)):
            self.drops[DROP_NOT_OWNER] += 1
            return
        if removal and holder is _UNOWNED:
            return  # nothing to remove, and no reason to remember an unknown id
        claimable = table.claimable
        if holder is _UNOWNED and not self._remote and claimable is not None and not claimable(client, owner):
            self.drops[DROP_NOT_OWNER] += 1
            return
        if not removal and not self._within_limits(holder):
            if self.rate_limited and holder == owner:
                # Held back, not lost: the latest one is relayed at the next sweep (`expire`),
                # so a burst (a selection dragged with the mouse) still ends where it ended.
                self.deferred[client] = validate_entry(entry)
            return
        self.deferred.pop(client, None)
        accepted = validate_entry(entry)
        vouch = table.vouch
        if vouch is not None and not removal and not self._remote:
            state = vouch(owner, accepted.state_json)
            if state != accepted.state_json:
                accepted = AwarenessEntry(client, accepted.clock, state)
                self.rewritten = True
        self.accepted.append(accepted)
        if not removal:
            self._seen[client] = (entry.clock, True, owner)
        else:  # a remote owner's removal releases the id; a local owner keeps it reserved
            self._seen[client] = (entry.clock, False, _UNOWNED if _is_remote(holder) else holder)

    def _within_limits(self, holder: Hashable | None) -> bool:
        if self._remote:
            return True
        limits = self._table._limits
        self.rate_limited = False
        if holder is _UNOWNED and limits.max_clients is not None:
            held = len(self._table._owned.get(self._owner, ())) + self._new_ids
            if held >= limits.max_clients:
                self.drops[DROP_TOO_MANY_CLIENTS] += 1
                return False
        if self.bucket is not None:
            if self.bucket.tokens < 1:
                self.drops[DROP_RATE] += 1
                self.rate_limited = True
                return False
            self.bucket.tokens -= 1
        if holder is _UNOWNED:
            self._new_ids += 1
        return True


# Marks "nobody holds this id" (None is a valid owner: a remote node, for older callers).
_UNOWNED: Hashable = object()
