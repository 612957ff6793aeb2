"""The awareness table follows y-protocols' clock rules, lets only a client id's owner change it,
and keeps every owner within its limits."""

from __future__ import annotations

from collections import Counter

import pytest

from crdt.awareness import (
    DROP_NOT_OWNER,
    DROP_RATE,
    DROP_STATE_SIZE,
    DROP_TOO_MANY_CLIENTS,
    DROP_TOO_MANY_ENTRIES,
    AwarenessLimits,
    AwarenessTable,
    RemoteOwner,
)
from protocol.awareness import MAX_CLOCK, AwarenessEntry, decode_awareness_update, encode_awareness_update
from protocol.errors import ProtocolError
from protocol.lib0 import var_uint

A, B = "conn-a", "conn-b"


def update(*entries: tuple[int, int, str]) -> bytes:
    return encode_awareness_update([AwarenessEntry(c, k, s) for c, k, s in entries])


def test_fresh_client_at_clock_zero_is_ignored() -> None:
    table = AwarenessTable()
    change = table.apply(update((1, 0, "{}")), A, now=0)
    assert not change.changed and len(table) == 0


def test_newer_clock_is_accepted_and_relayed_verbatim() -> None:
    table = AwarenessTable()
    data = update((1, 1, '{"user":{"name":"A"}}'))
    change = table.apply(data, A, now=0)
    assert change.added == [1] and change.update == data
    assert table.states == {1: '{"user":{"name":"A"}}'}


def test_stale_clock_is_ignored_and_only_accepted_entries_relayed() -> None:
    table = AwarenessTable()
    table.apply(update((1, 5, '{"a":1}')), A, now=0)
    change = table.apply(update((1, 4, '{"a":0}'), (2, 1, '{"b":1}')), B, now=0)
    assert change.added == [2]
    assert decode_awareness_update(change.update or b"") == [AwarenessEntry(2, 1, '{"b":1}')]
    assert table.states[1] == '{"a":1}'


def test_same_clock_removal_of_present_client() -> None:
    table = AwarenessTable()
    table.apply(update((1, 3, "{}")), A, now=0)
    change = table.apply(update((1, 3, "null")), A, now=0)
    assert change.removed == [1] and len(table) == 0
    # A second removal at the same clock changes nothing.
    assert not table.apply(update((1, 3, "null")), A, now=0).changed


def test_renewal_with_same_state_is_relayed() -> None:
    # Renewals keep other clients' 30 s timeouts from dropping the state.
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    change = table.apply(update((1, 2, "{}")), A, now=15)
    assert change.updated == [1] and change.changed


def test_disconnect_removes_only_owned_clients_with_same_clock() -> None:
    table = AwarenessTable()
    table.apply(update((1, 2, '{"n":1}')), A, now=0)
    table.apply(update((2, 7, '{"n":2}')), B, now=0)
    change = table.remove_owned_by(A)
    assert change.removed == [1]
    assert decode_awareness_update(change.update or b"") == [AwarenessEntry(1, 2, "null")]
    assert list(table.states) == [2]


def test_client_moving_to_new_connection_gets_its_id_once_the_old_one_left() -> None:
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    change = table.apply(update((1, 2, '{"back":true}')), B, now=1)  # same client id on B
    assert not change.changed and change.dropped == 1  # A still holds it
    assert table.remove_owned_by(A).removed == [1]
    # Known before (its clock is kept), so "updated", as y-protocols reports it.
    assert table.apply(update((1, 3, '{"back":true}')), B, now=2).updated == [1]
    assert table.remove_owned_by(B).removed == [1]


def test_returning_client_after_removal_is_owned_again() -> None:
    # The reference server loses track here (an "updated", not "added", client) and leaves a ghost.
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    table.apply(update((1, 1, "null")), A, now=0)
    table.apply(update((1, 2, "{}")), A, now=0)
    assert table.remove_owned_by(A).removed == [1]


def test_expiry_drops_states_not_renewed() -> None:
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    table.apply(update((2, 1, "{}")), B, now=20)
    change = table.expire(now=31, timeout=30)
    assert change.removed == [1] and list(table.states) == [2]


def test_encode_all() -> None:
    table = AwarenessTable()
    assert table.encode_all() is None
    table.apply(update((1, 1, '{"x":1}'), (2, 3, "{}")), A, now=0)
    assert decode_awareness_update(table.encode_all() or b"") == [
        AwarenessEntry(1, 1, '{"x":1}'),
        AwarenessEntry(2, 3, "{}"),
    ]


def test_malformed_update_changes_nothing() -> None:
    table = AwarenessTable()
    with pytest.raises(ProtocolError):
        table.apply(update((1, 1, "{}")) + b"\x00", A, now=0)
    assert len(table) == 0


# -- ownership ---------------------------------------------------------------------------


class Node(RemoteOwner):
    """Stands for another node (like server.room.RemoteNode)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


def test_others_cannot_overwrite_or_remove_an_owned_client() -> None:
    drops: Counter[str] = Counter()
    table = AwarenessTable(drops=drops)
    table.apply(update((1, 1, '{"me":"A"}')), A, now=0)
    for attack in (update((1, 9, '{"me":"evil"}')), update((1, 1, "null")), update((1, MAX_CLOCK - 1, "{}"))):
        change = table.apply(attack, B, now=1)
        assert not change.changed and change.dropped == 1
    assert table.states == {1: '{"me":"A"}'} and table.clock_of(1) == 1
    assert drops == {DROP_NOT_OWNER: 3}
    assert not table.remove_owned_by(B).changed


def test_own_removal_keeps_the_id_reserved_until_the_owner_leaves() -> None:
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    assert table.apply(update((1, 1, "null")), A, now=0).removed == [1]
    assert table.apply(update((1, 5, '{"me":"evil"}')), B, now=0).dropped == 1
    assert table.apply(update((1, 2, '{"me":"A"}')), A, now=0).updated == [1]
    assert table.owned_by(A) == {1}


def test_stale_echoes_are_not_counted_as_drops() -> None:
    # Providers re-send every state they apply: an echo of A's state from B is stale, not hostile.
    table = AwarenessTable()
    data = update((1, 4, '{"me":"A"}'))
    table.apply(data, A, now=0)
    change = table.apply(data, B, now=0)
    assert not change.changed and change.dropped == 0


def test_released_id_keeps_its_clock_against_late_echoes() -> None:
    table = AwarenessTable()
    table.apply(update((1, 4, '{"me":"A"}')), A, now=0)
    table.remove_owned_by(A)
    # B echoes A's last state after A left: it must not bring a ghost back.
    assert not table.apply(update((1, 4, '{"me":"A"}')), B, now=1).changed
    assert table.clock_of(1) == 4
    # After a timeout the tombstone is forgotten.
    table.expire(now=40, timeout=30)
    assert table.clock_of(1) == 0


def test_expired_state_releases_the_id() -> None:
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    assert table.expire(now=31, timeout=30).removed == [1]
    assert table.apply(update((1, 2, "{}")), B, now=32).updated == [1]
    assert table.owners() == {1: B}


def test_remote_owners_move_ids_by_clock_but_never_take_local_ones() -> None:
    n1, n2 = Node("n1"), Node("n2")
    table = AwarenessTable()
    table.apply(update((7, 1, '{"on":"n1"}')), n1, now=0)
    # A client that moved from node 1 to node 2: as before, the newer clock wins.
    assert table.apply(update((7, 2, '{"on":"n2"}')), n2, now=0).updated == [7]
    assert table.owners() == {7: n2}
    # A remote removal releases the id.
    assert table.apply(update((7, 2, "null")), n2, now=0).removed == [7]
    assert table.owners() == {}
    # Local and remote owners exclude each other, both ways.
    table.apply(update((8, 1, '{"me":"A"}')), A, now=0)
    assert table.apply(update((8, 5, '{"me":"evil"}')), n1, now=0).dropped == 1
    table.apply(update((9, 1, '{"on":"n1"}')), n1, now=0)
    assert table.apply(update((9, 5, '{"me":"evil"}')), A, now=0).dropped == 1
    assert table.states == {8: '{"me":"A"}', 9: '{"on":"n1"}'}


def test_none_owner_is_remote() -> None:
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), None, now=0)
    assert table.apply(update((1, 2, "{}")), Node("n"), now=0).updated == [1]


# -- clocks ------------------------------------------------------------------------------


def test_clock_two_to_the_53_is_accepted_from_the_owner() -> None:
    # y-protocols answers 2^53 - 1 with 2^53; refusing that locked the client out.
    table = AwarenessTable()
    table.apply(update((1, MAX_CLOCK - 1, "{}")), A, now=0)
    change = table.apply(update((1, MAX_CLOCK, '{"x":1}')), A, now=0)
    assert change.updated == [1] and table.clock_of(1) == MAX_CLOCK
    assert decode_awareness_update(table.encode_all() or b"") == [AwarenessEntry(1, MAX_CLOCK, '{"x":1}')]
    assert table.remove_owned_by(A).removed == [1]


def test_clock_beyond_two_to_the_53_is_malformed() -> None:
    too_big = bytes.fromhex("01 01") + bytes.fromhex("81 80 80 80 80 80 80 10") + bytes.fromhex("02 7b 7d")
    with pytest.raises(ProtocolError):
        AwarenessTable().apply(too_big, A, now=0)


# -- limits ------------------------------------------------------------------------------


def test_too_many_entries_is_dropped_before_any_entry_is_decoded() -> None:
    drops: Counter[str] = Counter()
    table = AwarenessTable(AwarenessLimits(max_entries=100), drops)
    # A million entries claimed, followed by bytes that are no entries at all: had the table
    # decoded a single one, this would raise; it is dropped on the count alone.
    bomb = var_uint(1_000_000) + b"\\xff" * 3_000_000
    change = table.apply(bomb, A, now=0)
    assert not change.changed and change.dropped == 1 and len(table) == 0
    assert drops == {DROP_TOO_MANY_ENTRIES: 1}


def test_entry_limit_does_not_apply_to_remote_owners() -> None:
    table = AwarenessTable(AwarenessLimits(max_entries=2, max_clients=2))
    many = update(*[(c, 1, "{}") for c in range(1, 11)])
    assert len(table.apply(many, Node("n"), now=0).added) == 10


def test_state_too_big_is_dropped() -> None:
    drops: Counter[str] = Counter()
    table = AwarenessTable(AwarenessLimits(max_state_bytes=16), drops)
    assert table.apply(update((1, 1, '{"a":"' + "x" * 20 + '"}')), A, now=0).dropped == 1
    assert table.apply(update((1, 1, '{"a":"ok"}')), A, now=0).added == [1]
    assert drops == {DROP_STATE_SIZE: 1}


def test_clients_per_owner_are_limited() -> None:
    drops: Counter[str] = Counter()
    table = AwarenessTable(AwarenessLimits(max_clients=2), drops)
    change = table.apply(update((1, 1, "{}"), (2, 1, "{}"), (3, 1, "{}")), A, now=0)
    assert change.added == [1, 2] and change.dropped == 1
    assert decode_awareness_update(change.update or b"") == [
        AwarenessEntry(1, 1, "{}"),
        AwarenessEntry(2, 1, "{}"),
    ]
    assert table.apply(update((4, 1, "{}")), A, now=0).dropped == 1
    # Renewing the ids it holds is fine; another owner has its own allowance.
    assert table.apply(update((1, 2, "{}")), A, now=0).updated == [1]
    assert table.apply(update((4, 1, "{}")), B, now=0).added == [4]
    assert drops == {DROP_TOO_MANY_CLIENTS: 2}


def test_rate_is_limited_with_a_burst_and_removals_are_free() -> None:
    drops: Counter[str] = Counter()
    table = AwarenessTable(AwarenessLimits(rate=5, burst=10), drops)
    accepted = sum(table.apply(update((1, clock, "{}")), A, now=0).changed for clock in range(1, 21))
    assert accepted == 10 and drops == {DROP_RATE: 10}
    # Refilled at 5 per second: one second later, five more.
    accepted = sum(table.apply(update((1, clock, "{}")), A, now=1).changed for clock in range(21, 31))
    assert accepted == 5
    # The bucket is per owner, and a removal always passes.
    assert table.apply(update((2, 1, "{}")), B, now=1).added == [2]
    assert table.apply(update((1, 31, "null")), A, now=1).removed == [1]


def test_a_dropped_entry_does_not_hold_back_the_next_one() -> None:
    # States are complete, not deltas: the next accepted entry carries everything.
    table = AwarenessTable(AwarenessLimits(rate=1, burst=1))
    table.apply(update((1, 1, '{"n":1}')), A, now=0)
    assert table.apply(update((1, 2, '{"n":2}')), A, now=0).dropped == 1
    assert table.apply(update((1, 3, '{"n":3}')), A, now=1).updated == [1]
    assert table.states == {1: '{"n":3}'}


def test_malformed_entry_leaves_table_bucket_and_drops_unchanged() -> None:
    drops: Counter[str] = Counter()
    table = AwarenessTable(AwarenessLimits(rate=2, burst=2), drops)
    table.apply(update((9, 1, "{}")), B, now=0)
    # The first entry is fine, B's is dropped, the last (to be accepted) is not JSON.
    bad = update((1, 1, "{}"), (9, 2, "{}"), (2, 1, "{}"))[:-2] + b"{x"
    with pytest.raises(ProtocolError):
        table.apply(bad, A, now=0)
    assert list(table.states) == [9] and not drops
    # A's two tokens are still there.
    assert table.apply(update((1, 1, "{}"), (2, 1, "{}")), A, now=0).added == [1, 2]


def test_encode_all_is_shared_until_the_table_changes() -> None:
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    first = table.encode_all()
    assert first is table.encode_all()
    table.apply(update((2, 1, "{}")), B, now=0)
    assert decode_awareness_update(table.encode_all() or b"") == [
        AwarenessEntry(1, 1, "{}"),
        AwarenessEntry(2, 1, "{}"),
    ]
    table.remove_owned_by(A)
    table.remove_owned_by(B)
    assert table.encode_all() is None


def test_the_latest_state_held_back_by_the_rate_is_relayed_at_the_next_sweep() -> None:
    # A selection dragged with the mouse: the burst is cut, but it still ends where it ended.
    table = AwarenessTable(AwarenessLimits(rate=1, burst=1))
    table.apply(update((1, 1, '{"n":1}')), A, now=0)
    for clock in (2, 3, 4):
        assert table.apply(update((1, clock, f'{{"n":{clock}}}')), A, now=0).dropped == 1
    assert table.states == {1: '{"n":1}'}
    assert not table.expire(now=0.5, timeout=30).changed  # no allowance yet
    change = table.expire(now=1, timeout=30)
    assert change.updated == [1] and not change.removed
    assert decode_awareness_update(change.update or b"") == [AwarenessEntry(1, 4, '{"n":4}')]
    assert table.states == {1: '{"n":4}'} and table.clock_of(1) == 4
    assert not table.expire(now=5, timeout=30).changed  # relayed once


def test_a_held_back_state_is_forgotten_when_overtaken_or_released() -> None:
    table = AwarenessTable(AwarenessLimits(rate=1, burst=1))
    table.apply(update((1, 1, "{}"), (2, 1, "{}")), A, now=0)  # the second is a new id: dropped
    table.apply(update((1, 2, '{"old":1}')), A, now=0)  # held back
    table.apply(update((1, 3, '{"new":1}')), A, now=5)  # accepted: overtakes it
    assert not table.expire(now=10, timeout=30).changed
    assert table.states == {1: '{"new":1}'}
    table.apply(update((1, 4, '{"held":1}')), A, now=10)
    table.remove_owned_by(A)
    assert not table.expire(now=20, timeout=30).changed and len(table) == 0


def test_a_sweep_can_remove_and_relay_at_once() -> None:
    table = AwarenessTable(AwarenessLimits(rate=1, burst=1))
    table.apply(update((1, 1, "{}")), A, now=0)
    table.apply(update((2, 1, "{}")), B, now=29)
    table.apply(update((2, 2, '{"b":2}')), B, now=29)  # held back
    change = table.expire(now=31, timeout=30)
    assert change.removed == [1] and change.updated == [2]
    assert decode_awareness_update(change.update or b"") == [
        AwarenessEntry(1, 1, "null"),
        AwarenessEntry(2, 2, '{"b":2}'),
    ]
