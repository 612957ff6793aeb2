"""The awareness table follows y-protocols' clock rules and tracks who owns which client."""

from __future__ import annotations

import pytest

from crdt.awareness import AwarenessTable
from protocol.awareness import AwarenessEntry, decode_awareness_update, encode_awareness_update
from protocol.errors import ProtocolError

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


def test_client_moving_to_new_connection_is_not_removed_with_the_old_one() -> None:
    table = AwarenessTable()
    table.apply(update((1, 1, "{}")), A, now=0)
    table.apply(update((1, 2, '{"back":true}')), B, now=1)  # same client id reconnected on B
    assert not table.remove_owned_by(A).changed
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
