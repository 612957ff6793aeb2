"""The receive loop every client socket shares: frames in order, bad input → a clean close.

A frame is handled completely before the next is read (messages of one connection never
interleave). Whatever a client sends, the worst outcome is that its own socket is closed
with a code and a reason; the room and the other clients are unaffected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket

from crdt.errors import CrdtError
from protocol.errors import ProtocolError, UnknownMessageType

from .close_codes import CloseCode
from .errors import RoomLoadError
from .sender import SocketSender

__all__ = ["ClientError", "serve_socket"]

log = logging.getLogger(__name__)


class ClientError(Exception):
    """The client did something this server refuses; close with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def serve_socket(
    websocket: WebSocket,
    sender: SocketSender,
    handle_frame: Callable[[bytes], Awaitable[None]],
    *,
    max_message_size: int,
    label: str,
) -> None:
    """Run the socket until the client leaves or is closed; returns when its writer is done."""
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(sender.run())
        try:
            await _receive_loop(websocket, sender, handle_frame, max_message_size, label)
        finally:
            if not sender.closing:
                sender.finish()


async def _receive_loop(
    websocket: WebSocket,
    sender: SocketSender,
    handle_frame: Callable[[bytes], Awaitable[None]],
    max_message_size: int,
    label: str,
) -> None:
    while not sender.closing:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            sender.finish()
            return
        data = message.get("bytes")
        if data is None:
            sender.refuse(CloseCode.UNSUPPORTED_DATA, "text frames are not supported; send binary")
            return
        if len(data) > max_message_size:  # normally enforced by the WebSocket layer already
            sender.refuse(CloseCode.MESSAGE_TOO_BIG, "message too big")
            return
        try:
            await handle_frame(data)
        except UnknownMessageType as exc:
            sender.refuse(CloseCode.PROTOCOL_ERROR, exc.reason)
            return
        except ProtocolError as exc:
            sender.refuse(CloseCode.INVALID_PAYLOAD, exc.reason)
            return
        except CrdtError as exc:
            sender.refuse(CloseCode.INVALID_PAYLOAD, exc.reason)
            return
        except ClientError as exc:
            sender.refuse(exc.code, exc.reason)
            return
        except RoomLoadError as exc:
            log.error("%s: %s", label, exc)
            sender.close(CloseCode.INTERNAL_ERROR, str(exc))
            return
        except Exception:
            log.exception("%s: unexpected error while handling a frame", label)
            sender.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
