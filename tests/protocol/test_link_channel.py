"""The site link's sealed channel: every frame carries a MAC over an implicit sequence
number, so nothing can be forged, altered, dropped, replayed or reordered unnoticed."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from protocol.link_channel import MAC_BYTES, ChannelIntegrityError, FrameOpener, FrameSealer
from protocol.sitelink import Ack, decode_link_message, encode_link_message

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_frames_round_trip_in_order_with_a_32_byte_mac() -> None:
    sealer, opener = FrameSealer(KEY), FrameOpener(KEY)
    frames = [encode_link_message(Ack(n)) for n in (1, 2, 3)] + [b"", b"x" * 100_000]
    sealed = [sealer.seal(frame) for frame in frames]
    assert all(len(s) == len(f) + MAC_BYTES for s, f in zip(sealed, frames, strict=True))
    assert [opener.open(s) for s in sealed] == frames
    assert opener.sequence == sealer.sequence == len(frames)


def test_the_mac_is_hmac_sha256_over_the_sequence_number_and_the_frame() -> None:
    # The golden rule another implementation must follow (uint64 big-endian, then the frame).
    sealer = FrameSealer(KEY)
    sealer.seal(b"first")
    frame = encode_link_message(Ack(7))
    expected = hmac.new(KEY, (1).to_bytes(8, "big") + frame, hashlib.sha256).digest()
    assert sealer.seal(frame) == frame + expected


def opened_after(sealed: list[bytes], key: bytes = KEY) -> tuple[list[bytes], ChannelIntegrityError | None]:
    opener, out = FrameOpener(key), []
    try:
        for frame in sealed:
            out.append(opener.open(frame))
    except ChannelIntegrityError as exc:
        return out, exc
    return out, None


def sealed_acks(count: int) -> list[bytes]:
    sealer = FrameSealer(KEY)
    return [sealer.seal(encode_link_message(Ack(n))) for n in range(1, count + 1)]


def test_a_forged_ack_does_not_verify() -> None:
    # A relay without the key: the ACK it makes up, with any 32 bytes as its MAC.
    forged = encode_link_message(Ack(99)) + b"\x00" * MAC_BYTES
    opened, failure = opened_after([*sealed_acks(1), forged])
    assert len(opened) == 1 and failure is not None and "frame 1" in failure.reason


def test_an_altered_frame_does_not_verify() -> None:
    frames = sealed_acks(2)
    altered = bytearray(frames[1])
    altered[1] ^= 1  # ACK 2 becomes ACK 3
    _, failure = opened_after([frames[0], bytes(altered)])
    assert failure is not None


@pytest.mark.parametrize(
    ("order", "genuine"),
    [([0, 2], 1), ([0, 1, 1], 2), ([1, 0], 0), ([0, 0], 1)],
    ids=["dropped", "replayed", "reordered", "replayed-at-once"],
)
def test_a_gap_a_replay_or_a_reordering_ends_the_channel(order: list[int], genuine: int) -> None:
    frames = sealed_acks(3)
    opened, failure = opened_after([frames[i] for i in order])
    assert failure is not None
    assert opened == [FrameOpener(KEY).open(frames[0]), frames[1][:-MAC_BYTES]][:genuine]


def test_frames_of_another_key_or_direction_do_not_verify() -> None:
    _, failure = opened_after(sealed_acks(1), key=OTHER_KEY)
    assert failure is not None


def test_a_broken_channel_stays_broken_and_short_frames_are_refused() -> None:
    frames = sealed_acks(2)
    opener = FrameOpener(KEY)
    with pytest.raises(ChannelIntegrityError, match="too short"):
        opener.open(b"\x05\x01")  # an unsealed ACK, as a relay of link/2 would forge it
    with pytest.raises(ChannelIntegrityError, match="already failed"):
        opener.open(frames[0])  # even a genuine frame: the sequence is lost
    assert decode_link_message(FrameOpener(KEY).open(frames[0])) == Ack(1)


def test_keys_are_32_bytes() -> None:
    with pytest.raises(ValueError):
        FrameSealer(b"short")
    with pytest.raises(ValueError):
        FrameOpener(b"\x00" * 33)
