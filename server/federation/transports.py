"""Site link transports: the accepted side is a Starlette WebSocket, the dialing side a
`websockets` client connection; the link code sees only `LinkTransport`."""

from __future__ import annotations

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ..close_codes import close_reason
from .handshake import LinkClosed

__all__ = ["AcceptedTransport", "DialedTransport"]


class AcceptedTransport:
    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket

    async def send(self, data: bytes) -> None:
        try:
            await self._websocket.send_bytes(data)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise LinkClosed(str(exc) or "link closed") from exc

    async def recv(self) -> bytes:
        message = await self._websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise LinkClosed(f"peer closed the link ({message.get('code')})")
        data = message.get("bytes")
        if data is None:
            raise LinkClosed("text frame on a site link")
        return bytes(data)

    async def close(self, code: int, reason: str) -> None:
        if self._websocket.application_state == WebSocketState.CONNECTED:
            try:
                await self._websocket.close(code, close_reason(reason))
            except (RuntimeError, OSError):
                pass


class DialedTransport:
    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection

    async def send(self, data: bytes) -> None:
        try:
            await self._connection.send(data)
        except ConnectionClosed as exc:
            raise LinkClosed(str(exc)) from exc

    async def recv(self) -> bytes:
        try:
            data = await self._connection.recv()
        except ConnectionClosed as exc:
            raise LinkClosed(str(exc)) from exc
        if isinstance(data, str):
            raise LinkClosed("text frame on a site link")
        return data

    async def close(self, code: int, reason: str) -> None:
        await self._connection.close(code, close_reason(reason))
