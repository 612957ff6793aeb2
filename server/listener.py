"""uvicorn's HTTP and WebSocket protocols with the guards they lack against idle or slow clients.

What uvicorn (httptools, websockets sans-I/O) does not bound by itself:
- a TCP connection that never sends a request stays open for ever (the keep-alive timeout
  only starts after a first response), and so does one that trickles its headers a byte at
  a time; httptools puts no limit on the header size either;
- a WebSocket that completed its upgrade and answers pings but never sends a message;
- a WebSocket's frame limit is one for the whole server (`ws_max_size`), so a stranger on
  an endpoint whose first messages are small (the site link's handshake) could still make
  the node buffer a frame of many MiB before anything authenticated it.
Here every connection must complete its request headers within SAMEN_HANDSHAKE_TIMEOUT and
in at most MAX_HEADER_BYTES, and a client WebSocket must send its first message within
SAMEN_FIRST_MESSAGE_TIMEOUT. On the paths given as `small_until_lifted`, frames are held to
a small limit (larger: close 1009, decided on the frame header, before its payload is
read) until the application calls the `LIFT_FRAME_LIMIT` callable it finds in the
ASGI scope. Every TCP connection is counted by the node's `Admission`, which may close the
oldest one that has no request in progress to make room (see there).

These are subclasses of uvicorn's own classes (`uvicorn.Config(http=..., ws=...)` takes
them), overriding the protocol callbacks only; tests/integration/test_hostile_clients.py
exercises every guard against a real server, so an incompatible uvicorn shows up there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from .admission import Admission

__all__ = ["LIFT_FRAME_LIMIT", "MAX_HEADER_BYTES", "guarded_protocols", "lift_frame_limit"]

# Request line and headers of one request. Browsers send well under 8 KiB; cookies can grow.
MAX_HEADER_BYTES = 64 * 1024
SILENT_CLOSE_CODE = 1008
# The scope key of the callable that gives a connection the server's full frame limit back.
LIFT_FRAME_LIMIT = "samen.lift_frame_limit"


def lift_frame_limit(scope: Mapping[str, Any]) -> None:
    """Give this WebSocket the server's full frame limit (once it has authenticated)."""
    lift = scope.get(LIFT_FRAME_LIMIT)
    if callable(lift):
        lift()


def guarded_protocols(
    admission: Admission,
    handshake_timeout: float,
    first_message_timeout: float,
    small_until_lifted: Mapping[str, int] | None = None,
) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """The HTTP and WebSocket protocol classes to give uvicorn, bound to `admission`.
    `small_until_lifted`: path -> the frame limit there until the app lifts it."""
    small = dict(small_until_lifted or {})

    class GuardedWebSockets(WebSocketsSansIOProtocol):
        _samen_timer: asyncio.TimerHandle | None = None

        def handle_connect(self, event: Any) -> None:
            super().handle_connect(event)
            scope: dict[str, Any] | None = getattr(self, "scope", None)  # None: upgrade refused
            limit = small.get(scope["path"]) if scope is not None else None
            if scope is None or limit is None:
                return
            conn = self.conn
            full = conn.max_message_size
            # websockets reads the limit before each frame: the next one is held to it.
            conn.max_message_size = limit

            def lift() -> None:
                conn.max_message_size = full

            lift_callable: Callable[[], None] = lift
            scope[LIFT_FRAME_LIMIT] = lift_callable

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._samen_timer = self.loop.call_later(first_message_timeout, self._samen_silent)

        def send_receive_event_to_app(self) -> None:
            if self._samen_timer is not None:  # the first complete message arrived
                self._samen_timer.cancel()
                self._samen_timer = None
            super().send_receive_event_to_app()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._samen_timer is not None:
                self._samen_timer.cancel()
                self._samen_timer = None
            admission.tcp_closed(self.transport)
            super().connection_lost(exc)

        def _samen_silent(self) -> None:
            self._samen_timer = None
            if self.close_sent or self.transport.is_closing():
                return
            if not self.handshake_complete:  # the app never answered the upgrade
                self.transport.close()
                return
            host = self.client[0] if self.client else "?"
            admission.refuse(
                "first_message_timeout",
                f"closed a WebSocket from {host}: no message within {first_message_timeout:g} s",
            )
            self.conn.send_close(SILENT_CLOSE_CODE, f"no message within {first_message_timeout:g} s")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.transport.close()

    class GuardedHttp(HttpToolsProtocol):
        _samen_timer: asyncio.TimerHandle | None = None
        _samen_bytes = 0
        _samen_tail = b""
        _samen_host = "?"

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._samen_host = self.client[0] if self.client else "?"
            if not admission.tcp_opened(self.transport, self._samen_host, self._samen_evict):
                self.transport.close()
                return
            self._samen_wait_for_headers()

        def _samen_wait_for_headers(self) -> None:
            if self._samen_timer is None:
                self._samen_bytes, self._samen_tail = 0, b""
                self._samen_timer = self.loop.call_later(handshake_timeout, self._samen_too_slow)

        def _samen_stop_waiting(self) -> None:
            if self._samen_timer is not None:
                self._samen_timer.cancel()
                self._samen_timer = None

        def data_received(self, data: bytes) -> None:
            if self._samen_timer is not None and not self._samen_headers_fit(data):
                self._samen_stop_waiting()
                admission.refuse(
                    "headers_too_big",
                    f"refused a request from {self._samen_host}: headers over {MAX_HEADER_BYTES} bytes",
                )
                self._samen_reply(431, "request headers too large")
                return
            super().data_received(data)

        def _samen_headers_fit(self, data: bytes) -> bool:
            """Count the bytes of `data` up to the end of the headers (a body sent along
            does not count), before the parser sees them: httptools has no limit."""
            window = self._samen_tail + data
            end = window.find(b"\r\n\r\n")
            counted = len(data) if end < 0 else max(0, end + 4 - len(self._samen_tail))
            self._samen_bytes += counted
            self._samen_tail = window[-3:]
            return self._samen_bytes <= MAX_HEADER_BYTES

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._samen_wait_for_headers()  # a keep-alive connection's next request, too

        def on_headers_complete(self) -> None:
            self._samen_stop_waiting()
            admission.tcp_busy(self.transport)
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                admission.tcp_idle(self.transport, self._samen_host, self._samen_evict)

        def connection_lost(self, exc: Exception | None) -> None:
            self._samen_stop_waiting()
            admission.tcp_closed(self.transport)
            super().connection_lost(exc)

        def _samen_too_slow(self) -> None:
            self._samen_timer = None
            if self.transport.is_closing():
                return
            admission.refuse(
                "handshake_timeout",
                f"closed a connection from {self._samen_host}: no complete request within "
                f"{handshake_timeout:g} s",
            )
            self._samen_reply(408, "request timeout")

        def _samen_evict(self) -> None:
            self._samen_stop_waiting()
            if not self.transport.is_closing():
                self.transport.close()

        def _samen_reply(self, status: int, message: str) -> None:
            body = message.encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                % (status, message.title().encode(), len(body), body)
            )
            self.transport.close()

    return GuardedHttp, GuardedWebSockets
