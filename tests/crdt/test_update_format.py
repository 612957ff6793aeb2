"""The strict update reader: golden bytes, and hand-made hostile updates at every boundary."""

from __future__ import annotations

import pycrdt
import pytest

from crdt.errors import InvalidStateVector, InvalidUpdate
from crdt.lib0_strict import MAX_ANY_DEPTH, MAX_CLOCK_END
from crdt.state_vectors import encode_state_vector, lookup_clocks, lowered, read_state_vector
from crdt.update_format import read_update, read_update_detail

from .craft import any_array, deleted, gc, group, item, skip, string, update, v, vs

HI = bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00")
DELETE_H = bytes.fromhex("00 01 01 01 00 01")
MERGED = bytes.fromhex("02 01 02 00 04 01 01 74 02 79 6f 01 01 00 04 01 01 74 02 68 69 00")
HI_V2 = bytes.fromhex("00 00 01 01 00 00 01 04 06 03 74 68 69 01 02 01 01 00 00 01 01 00 00")


def refused(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidUpdate) as caught:
        read_update(data)
    assert reason in caught.value.reason


# -- golden bytes ------------------------------------------------------------------------


def test_golden_updates() -> None:
    summary = read_update(HI)
    assert summary.structs == {1: [(0, 2, True)]} and summary.deletes == {} and summary.needs == {}
    assert summary.state_vector() == {1: 2}
    assert read_update(DELETE_H).deletes == {1: [(0, 1)]}
    merged = read_update(MERGED)
    assert merged.structs == {2: [(0, 2, True)], 1: [(0, 2, True)]}
    assert read_update(b"\x00\x00").is_empty


def test_a_v2_update_is_not_a_v1_update() -> None:
    refused(HI_V2, "trailing bytes")


def test_every_truncation_is_refused() -> None:
    for data in (HI, MERGED, DELETE_H):
        for cut in range(len(data)):
            with pytest.raises(InvalidUpdate):
                read_update(data[:cut])


def test_trailing_bytes_are_refused() -> None:
    refused(HI + b"\x00", "1 trailing bytes")
    refused(DELETE_H + b"\x07\x07", "2 trailing bytes")


# -- clocks: the boundary is 2^31 - 1, not 2^32 ------------------------------------------


def test_struct_clock_boundary() -> None:
    last = MAX_CLOCK_END - 1  # the last clock unit a struct may write
    assert read_update(update(group(7, last, string("a")))).structs == {7: [(last, MAX_CLOCK_END, True)]}
    refused(update(group(7, last, string("ab"))), "out of range")
    refused(update(group(7, MAX_CLOCK_END, string("a"))), "out of range")
    for clock in (2**31, 2**32 - 1, 2**32, 2**32 + 5, 2**53 - 1):
        refused(update(group(7, clock, string("a"))), "out of range")


def test_yrs_misplaces_clocks_from_2_31_so_the_boundary_is_there() -> None:
    """Why MAX_CLOCK_END is 2^31 - 1: raw Yrs (no reader) wraps a struct at 2^31 + 1 into a
    state vector claiming 2^31 + 2 clocks, so the victim's real first edit is 'known'."""

    def victim_clock_after(attack_clock: int) -> int:
        doc: pycrdt.Doc[object] = pycrdt.Doc()
        doc.apply_update(update(group(7, attack_clock, string("x"))))
        doc.apply_update(update(group(7, 0, string("V"))))
        return read_state_vector(doc.get_state()).get(7, 0)

    assert victim_clock_after(MAX_CLOCK_END - 2) == 1  # within the boundary: the edit counts
    assert victim_clock_after(2**31 + 1) == 2**31 + 2  # past it: the state vector lies
    assert victim_clock_after(2**32) == 1  # 2^32 reads as 0 and overwrites clock 0 instead


def test_gc_and_skip_lengths() -> None:
    squat = read_update(update(group(7, 0, gc(MAX_CLOCK_END))))
    assert squat.structs == {7: [(0, MAX_CLOCK_END, False)]}  # valid, but tells who it writes
    refused(update(group(7, 0, gc(MAX_CLOCK_END + 1))), "out of range")
    refused(update(group(7, 0, gc(2**32))), "out of range")
    refused(update(group(7, 1, skip(2**32 - 1), string("a"))), "out of range")
    refused(update(group(7, 0, deleted(2**31))), "out of range")


def test_referenced_ids_must_be_representable() -> None:
    for field in ("origin", "right", "parent"):
        ok = update(group(7, 0, string("a", **{field: (3, MAX_CLOCK_END - 1)})))
        assert read_update(ok).needs == {3: MAX_CLOCK_END}
        refused(update(group(7, 0, string("a", **{field: (3, MAX_CLOCK_END)}))), "referenced clock")
        refused(update(group(7, 0, string("a", **{field: (3, 2**32)}))), "referenced clock")


def test_delete_set_boundary() -> None:
    assert read_update(update(deletes={7: [(MAX_CLOCK_END - 5, 5)]})).deletes == {
        7: [(MAX_CLOCK_END - 5, MAX_CLOCK_END)]
    }
    refused(update(deletes={7: [(MAX_CLOCK_END - 5, 6)]}), "out of range")
    refused(update(deletes={7: [(2**32 - 1, 2)]}), "out of range")  # would wrap to [.., 1)
    refused(update(deletes={7: [(3, 0)]}), "empty delete range")
    refused(update(deletes={7: [(5, 2), (1, 1)]}), "not sorted")
    refused(update(deletes={7: [(1, 5), (3, 1)]}), "not sorted")


def test_client_ids_up_to_2_53_minus_1() -> None:
    assert read_update(update(group(2**53 - 1, 0, string("a")))).structs == {2**53 - 1: [(0, 1, True)]}
    refused(
        update(group(0, 0, string("a"))).replace(
            b"\x01\x00\x00", b"\x01\x80\x80\x80\x80\x80\x80\x80\x10\x00", 1
        ),
        "2^53",
    )
    refused(b"\x01\x01" + b"\xff" * 8 + b"\x01\x00" + string("a") + b"\x00", "longer than 8 bytes")


# -- counts that lie, checked before any loop --------------------------------------------


def test_counts_larger_than_the_bytes_left() -> None:
    refused(v(2**29) + b"\x00" * 6, "struct group count")
    refused(
        group(1, 0, string("a"), count=2**29)[:0] + b"\x01" + v(2**29) + b"\x01\x00" + string("a") + b"\x00",
        "struct count",
    )
    refused(update(group(1, 0, any_array(b"\x7e", count=2**29))), "Any count")
    refused(b"\x00" + v(2**29) + b"\x01\x01\x00\x01", "delete set client count")
    refused(b"\x00\x01\x01" + v(2**29) + b"\x00\x01", "delete range count")
    refused(update(group(1, 0, any_array(b"\x75" + v(2**29)))), "Any count")  # array element
    refused(
        update(group(1, 0, any_array(b"\x76" + v(2**29) + vs("k") + b"\x7e"))), "Any count"
    )  # object keys


def test_a_huge_claimed_count_costs_nothing() -> None:
    # The 2^29-entry claim is refused from its length alone (no loop, no allocation).
    refused(v(2**53 - 1) + b"\x00", "struct group count")


# -- Any nesting, content refs, type refs ------------------------------------------------


def nested_array(depth: int) -> bytes:
    return b"\x75\x01" * depth + b"\x7e"


def test_any_nesting_limit() -> None:
    assert read_update(update(group(1, 0, any_array(nested_array(MAX_ANY_DEPTH - 1)))))
    refused(update(group(1, 0, any_array(nested_array(MAX_ANY_DEPTH)))), "nested too deeply")
    refused(update(group(1, 0, any_array(nested_array(200_000)))), "nested too deeply")


def test_any_values_and_tags() -> None:
    values = [
        b"\x7f",
        b"\x7e",
        b"\x7d\x05",
        b"\x7c\x3f\x80\x00\x00",
        b"\x7b" + bytes(8),
        b"\x7a" + bytes(8),
        b"\x79",
        b"\x78",
        b"\x77" + vs("é"),
        b"\x74\x02\x01\x02",
    ]
    _, structs = read_update_detail(update(group(1, 0, any_array(*values))))
    assert structs[0].length == len(values)
    refused(update(group(1, 0, any_array(b"\x73"))), "unknown Any tag")
    refused(update(group(1, 0, any_array(b"\x7d\xff\xff\xff\xff\xff\xff\xff\xff\x01"))), "varInt")


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (0x14, "content ref"),  # ref 20: Yrs masks to 4 (String), Yjs has no ref 20
        (0x0B, "content ref"),
        (0x1F, "content ref"),
        (0x80, "content ref"),  # GC with an origin flag: Yjs GC, Yrs error
        (0x8A, "content ref"),  # Skip with an origin flag
    ],
)
def test_unknown_info_bits(info: int, reason: str) -> None:
    refused(update(group(1, 0, bytes([info]) + b"\x01\x01\x01" + vs("t") + vs("a"))), reason)


def test_json_content_and_unsupported_type_refs_are_refused() -> None:
    refused(update(group(1, 0, item(2, v(1) + vs("1")))), "JSON content")
    for type_ref in (5, 7, 9, 15, 0x80):
        refused(update(group(1, 0, item(7, bytes([type_ref]) + vs("hook")))), "type ref")
    for type_ref in (0, 1, 2, 4, 6):
        assert read_update(update(group(1, 0, item(7, bytes([type_ref])))))
    assert read_update(update(group(1, 0, item(7, b"\x03" + vs("paragraph")))))


def test_parent_info_must_be_0_or_1() -> None:
    refused(update(group(1, 0, b"\x04\x02" + vs("t") + vs("a"))), "parent info")


def test_invalid_utf8_anywhere_is_refused() -> None:
    bad = b"\x02\xc3\x28"
    refused(update(group(1, 0, item(4, bad))), "UTF-8")
    refused(update(group(1, 0, b"\x04\x01" + bad + vs("a"))), "UTF-8")  # root name
    refused(update(group(1, 0, item(4, vs("a"), key="k").replace(vs("k"), bad))), "UTF-8")
    refused(update(group(1, 0, item(4, b"\x03\xed\xa0\x80"))), "UTF-8")  # a lone surrogate
    refused(update(group(1, 0, any_array(b"\x77" + bad))), "UTF-8")


def test_embedded_json_must_parse_as_javascript_would() -> None:
    assert read_update(update(group(1, 0, item(5, vs('{"img": "a.png"}')))))
    refused(update(group(1, 0, item(5, vs("{nope")))), "JSON")
    refused(update(group(1, 0, item(5, vs("NaN")))), "JSON")
    refused(update(group(1, 0, item(5, vs("[-3e930]")))), "JSON")
    refused(update(group(1, 0, item(6, vs("bold") + vs("tru")))), "JSON")


def test_duplicate_groups_and_zero_lengths_are_refused() -> None:
    refused(update(group(1, 0, string("a")), group(1, 5, string("b"))), "two struct groups")
    refused(
        update(deletes={1: [(0, 1)]}).replace(
            b"\x01\x01\x01\x00\x01", b"\x02\x01\x01\x00\x01\x01\x01\x03\x01"
        ),
        "two delete set",
    )
    for struct in (string(""), gc(0), skip(0), deleted(0), any_array()):
        refused(update(group(1, 0, struct)), "zero-length")
    refused(b"\x01\x00\x01\x00" + string("a") + b"\x00", "empty struct group")


# -- lengths and summaries ---------------------------------------------------------------


def test_string_length_counts_utf16_code_units() -> None:
    assert read_update(update(group(1, 0, string("a😀é")))).structs == {1: [(0, 4, True)]}
    _, structs = read_update_detail(update(group(1, 0, string("😀"))))
    assert structs[0].units == ("😀".encode("utf-16-le")[:2], "😀".encode("utf-16-le")[2:])


def test_summary_of_gc_deleted_and_skip() -> None:
    summary = read_update(
        update(
            group(4, 0, string("ab"), deleted(3, origin=(4, 1)), gc(2), skip(5), string("c", origin=(9, 9)))
        )
    )
    assert summary.structs == {4: [(0, 2, True), (2, 7, False), (12, 13, True)]}
    assert summary.needs == {9: 10}
    assert summary.state_vector() == {4: 7}


def test_parents_and_types_are_reported() -> None:
    summary = read_update(
        update(group(4, 0, item(7, b"\x02"), string("x", parent=(4, 0)), string("y", parent=(8, 3))))
    )
    assert summary.parents == ((4, 0), (8, 3))
    assert summary.types == {(4, 0)}
    assert summary.needs == {8: 4}


def test_deletes_beyond_a_state_vector() -> None:
    pre_delete = read_update(update(deletes={7: [(0, 3), (10, 5)]}))
    assert pre_delete.deletes_beyond({7: 12}) == {7: [(12, 15)]}
    assert pre_delete.deletes_beyond({7: 20}) == {}
    assert pre_delete.deletes_beyond({}) == {7: [(0, 3), (10, 15)]}
    own = read_update(update(group(7, 5, string("abcdefghij")), deletes={7: [(6, 2), (14, 3)]}))
    assert own.deletes_beyond({7: 5}) == {7: [(15, 17)]}


# -- state vectors -----------------------------------------------------------------------


def test_state_vector_golden_and_bounds() -> None:
    assert read_state_vector(bytes.fromhex("01 01 02")) == {1: 2}
    assert read_state_vector(b"\x00") == {}
    assert read_state_vector(encode_state_vector({2**53 - 1: 2**32 - 1})) == {2**53 - 1: 2**32 - 1}
    for bad, reason in [
        (v(2**29) + b"\x01\x01\x01\x01\x01\x01\x01", "more entries"),  # 8 bytes claiming 2^29
        (encode_state_vector({1: 2**32}), "clock out of range"),
        (b"\x01" + b"\x80" * 7 + b"\x10\x00", "2^53"),
        (bytes.fromhex("01 01 02 00"), "trailing"),
        (bytes.fromhex("02 01 02 03 84"), "truncated"),
        (b"", "truncated"),
    ]:
        with pytest.raises(InvalidStateVector) as caught:
            read_state_vector(bad)
        assert reason in caught.value.reason


def test_lookup_clocks_in_a_long_state_vector() -> None:
    # Client ids whose bytes also appear as clocks and inside other numbers.
    clocks = {i * 7919 + (i % 3) * 2**40: (i * 7919) % 300 for i in range(1, 400)}
    clocks[128] = 7919
    clocks[7919] = 128
    data = encode_state_vector(clocks)
    wanted = [128, 7919, 5, 7919 * 2, 2**40 + 7919, 999_999]
    assert lookup_clocks(data, wanted) == {c: clocks.get(c, 0) for c in wanted}


def test_lowered_overrides_entries_as_yrs_reads_them() -> None:
    state = encode_state_vector({1: 5, 2: 9})
    assert read_state_vector(lowered(state, {2: 3, 4: 1})) == {1: 5, 2: 3, 4: 1}
    doc: pycrdt.Doc[object] = pycrdt.Doc()
    doc.apply_update(HI)
    diff = doc.get_update(lowered(doc.get_state(), {1: 1}))
    assert read_update(diff).structs == {1: [(1, 2, True)]}
