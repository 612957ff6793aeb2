"""Property: whatever bytes arrive, the decoders raise only their bad-input error
(ProtocolError; InvalidUpdate / InvalidStateVector for the crdt readers)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crdt.errors import InvalidStateVector, InvalidUpdate
from crdt.state_vectors import read_state_vector
from crdt.update_format import read_update, read_update_detail
from protocol import hocuspocus, ywebsocket
from protocol.awareness import decode_awareness_update
from protocol.errors import ProtocolError
from protocol.lib0 import Decoder

# Start from valid frames and mutate, so the fuzzer gets past the first byte.
SEEDS = [
    bytes.fromhex("00 02 0c 01 01 01 00 04 01 01 74 02 68 69 00"),
    bytes.fromhex("01 19 01 01 01 15") + b'{"user":{"name":"A"}}',
    bytes.fromhex("04 64 6f 63 31 02 00 06 73 65 63 72 65 74 05 34 2e 38 2e 30"),
    bytes.fromhex("04 64 6f 63 31 08 01"),
]

frames = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda seed, cut, junk: seed[:cut] + junk + seed[cut:],
        st.sampled_from(SEEDS),
        st.integers(0, 40),
        st.binary(max_size=8),
    ),
)


def _only_protocol_errors(decode: object, data: bytes) -> None:
    try:
        decode(data)  # type: ignore[operator]
    except ProtocolError:
        pass


@settings(max_examples=3000, deadline=None)
@given(frames)
def test_ywebsocket_decoder(data: bytes) -> None:
    _only_protocol_errors(ywebsocket.decode, data)


@settings(max_examples=3000, deadline=None)
@given(frames)
def test_hocuspocus_decoder(data: bytes) -> None:
    _only_protocol_errors(hocuspocus.decode_frame, data)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_awareness_decoder(data: bytes) -> None:
    _only_protocol_errors(decode_awareness_update, data)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=32))
def test_lib0_reads(data: bytes) -> None:
    for read in (Decoder.read_var_uint, Decoder.read_var_string, Decoder.read_var_uint8array):
        _only_protocol_errors(lambda raw, read=read: read(Decoder(raw)), data)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_backplane_decoder(data: bytes) -> None:
    from protocol.backplane import decode_backplane

    _only_protocol_errors(decode_backplane, data)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_site_link_decoders(data: bytes) -> None:
    from protocol.sitelink import decode_batch_body, decode_link_message

    _only_protocol_errors(decode_link_message, data)
    _only_protocol_errors(decode_batch_body, data)


UPDATE_SEEDS = [
    bytes.fromhex("01 01 01 00 04 01 01 74 02 68 69 00"),
    bytes.fromhex("02 01 02 00 04 01 01 74 02 79 6f 01 01 00 04 01 01 74 02 68 69 00"),
    bytes.fromhex("00 01 01 01 00 01"),
    bytes.fromhex("01 02 01 00 08 01 01 61 02 76 01 01 6b 75 01 7d 05 7b") + bytes(8) + b"\x00",
]

updates = st.one_of(
    st.binary(max_size=64),
    st.builds(
        lambda seed, cut, junk: seed[:cut] + junk + seed[cut:],
        st.sampled_from(UPDATE_SEEDS),
        st.integers(0, 40),
        st.binary(max_size=8),
    ),
)


@settings(max_examples=3000, deadline=None)
@given(updates)
def test_update_reader(data: bytes) -> None:
    for read in (read_update, read_update_detail):
        try:
            read(data)
        except InvalidUpdate:
            pass


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=32))
def test_state_vector_reader(data: bytes) -> None:
    try:
        read_state_vector(data)
    except InvalidStateVector:
        pass
