"""The largest request body the API reads: one that says it is larger (Content-Length), or
turns out larger while it streams, is refused with 413 `body_too_large` and the route never
runs (Starlette would otherwise read any body whole into memory before validating it).

Nothing of a refused body is kept. Up to `DRAIN_LIMIT` of it is read and dropped before the
answer, because most clients send the whole body before they read a response: answering
first resets their connection and they never see the error. A larger body is answered at
once and the connection closed."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

__all__ = ["DRAIN_LIMIT", "MAX_BODY", "BodyLimit"]

# Page Markdown is limited to 1 MiB (crdt/pages); JSON may escape it to a few times that.
MAX_BODY = 4 * 1024 * 1024
DRAIN_LIMIT = 64 * 1024 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            if int(declared) <= DRAIN_LIMIT and not await self._drain(receive, 0):
                return
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(body)
            if size > self.limit:
                chunks.clear()
                if more and not await self._drain(receive, size):
                    return
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
        replay: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replayed() -> Message:
            nonlocal replay
            if replay is not None:
                message, replay = replay, None
                return message
            return await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    async def _drain(receive: Receive, size: int) -> bool:
        """Read and drop the rest of the body (up to DRAIN_LIMIT); False if the client left."""
        while size <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] != "http.request":
                return False
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return True  # too much: answer now, the connection closes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413,
            "body_too_large",
            f"request bodies are limited to {self.limit} bytes",
            {"Connection": "close"},
        )
        await response(scope, receive, send)
