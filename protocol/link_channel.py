"""The site link's channel after the handshake: every frame carries a MAC.

Each direction of a link has its own 32-byte key (derived at the handshake, see
server/federation/channel_keys.py) and its own implicit sequence number, starting at 0:

    sealed frame = frame • HMAC-SHA256(key, uint64_be(sequence) • frame)

The sequence number is not sent: both ends count. A frame that was altered, forged,
dropped, replayed or reordered on the way fails the MAC check of the next frame the
receiver opens, so an on-path relay can neither forge an ACK nor drop a batch unnoticed;
the link then ends (the sender's cursor stays where the last genuine ACK put it and the
rows are sent again on the next link).

Pure computation: the keys are given, nothing here reads a socket.
"""

from __future__ import annotations

import hashlib
import hmac

from .errors import ProtocolError

__all__ = ["KEY_BYTES", "MAC_BYTES", "ChannelIntegrityError", "FrameOpener", "FrameSealer"]

KEY_BYTES = 32
MAC_BYTES = 32  # HMAC-SHA256, not truncated


class ChannelIntegrityError(ProtocolError):
    """A frame whose MAC does not verify: tampered with, forged, dropped, replayed or
    reordered between the two sites. The link cannot go on."""


def _mac(key: bytes, sequence: int, frame: bytes | memoryview) -> bytes:
    mac = hmac.new(key, sequence.to_bytes(8, "big"), hashlib.sha256)
    mac.update(frame)  # no copy of a big frame to prepend the sequence number
    return mac.digest()


class FrameSealer:
    """The sending end of one direction: `seal(frame)` is the frame to put on the wire."""

    __slots__ = ("_key", "sequence")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a channel key is {KEY_BYTES} bytes")
        self._key = key
        self.sequence = 0  # of the next frame

    def seal(self, frame: bytes) -> bytes:
        tag = _mac(self._key, self.sequence, frame)
        self.sequence += 1
        return frame + tag


class FrameOpener:
    """The receiving end of one direction: `open(sealed)` is the frame that was sealed, or
    raises `ChannelIntegrityError`; after that, the channel is broken for good (every later
    frame fails too, as the sequence numbers no longer match)."""

    __slots__ = ("_broken", "_key", "sequence")

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a channel key is {KEY_BYTES} bytes")
        self._key = key
        self.sequence = 0  # of the next frame expected
        self._broken = False

    def open(self, sealed: bytes) -> bytes:
        if self._broken:
            raise ChannelIntegrityError("the channel already failed its integrity check")
        if len(sealed) < MAC_BYTES:
            self._broken = True
            raise ChannelIntegrityError(f"frame {self.sequence}: {len(sealed)} bytes, too short for its MAC")
        view = memoryview(sealed)
        frame, tag = view[:-MAC_BYTES], view[-MAC_BYTES:]
        if not hmac.compare_digest(_mac(self._key, self.sequence, frame), tag):
            self._broken = True
            raise ChannelIntegrityError(
                f"frame {self.sequence} of this direction does not verify (altered, forged, dropped,"
                " replayed or reordered on the way)"
            )
        self.sequence += 1
        return bytes(frame)
