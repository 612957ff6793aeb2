"""Drive real npm Yjs clients (y-websocket, @hocuspocus/provider v2/v3/v4) from asyncio tests.

One ``node tests/js/driver.mjs`` process hosts any number of clients. Commands go to its stdin as
JSON lines; it answers every command with one reply line and pushes a ``state`` event line with
the client's full snapshot whenever anything observable about that client changes. Waiting is
event-driven: :meth:`Client.wait_for` re-checks its predicate on each pushed state.

Usage::

    async with YjsDriver() as driver:
        a = await driver.connect("a", "y-websocket", server.ws_url, ["doc"], user="Ann")
        b = await driver.connect("b", "hocuspocus-v4", server.hocuspocus_url, ["doc"], user="Bob")
        await a.edit("doc", [text_insert("hello")])
        await b.wait_for(lambda s: doc_text(s, "doc") == "hello", what="b sees a's text")

Snapshot of one client (``client.state`` / ``await client.snapshot()``)::

    {"cid": "a", "kind": "y-websocket", "closed": false,
     "docs": {"doc": {
        "synced": bool,                  # provider.synced
        "status": "connecting" | "connected" | "disconnected",
        "unsynced": int | None,          # hocuspocus provider.unsyncedChanges; None for y-websocket
        "hasUnsyncedChanges": bool | None,
        "authenticated": bool | None,    # hocuspocus provider.isAuthenticated; None for y-websocket
        "authFailed": str | None,        # reason of the last permission-denied (both protocols)
        "authFailures": [str, ...],      # every permission-denied reason, oldest first (at most 10)
        "closeCode": int | None,         # y-websocket: code of the last close (None for Hocuspocus)
        "closeReason": str | None,       # y-websocket: its reason
        "syncRefused": int | None,       # hocuspocus: SyncStatus(false) answers; None for y-websocket
        "syncStep1s": int | None,        # y-websocket: SyncStep1s from the server (1 + resyncs)
        "scope": str | None,             # hocuspocus authorizedScope ("read-write" / "readonly")
        "text": {"t": str, ...},         # every Y.Text root named "t" or used by an edit op
        "map": {...},                    # Y.Map "m" (keys sorted)
        "array": [...],                  # Y.Array "a"
        "xml": str,                      # Y.XmlFragment "default", toString()
        "other": {"map:NAME": ..., "array:NAME": ..., "xml:NAME": ...},  # other roots used by ops
        "awareness": {"<clientID>": state, ...},  # all awareness states except the client's own
        "clientID": int}}}

Text indices are Yjs indices (UTF-16 code units), not Python ``str`` indices.

Nested types: op values may be typed (``y_map``, ``y_text``, ``y_array`` make a new Y.Map,
Y.Text, Y.Array), and an op given ``path=`` acts on the nested type reached from a root by
array indices and map keys (``map_set("deleted", True, name="messages", path=[0], root="array")``
sets a key of the first element's Map). Such roots show in snapshots under ``other`` once an
op used them, or from the start with ``connect(..., roots=["array:messages"])``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

__all__ = [
    "CLIENT_KINDS",
    "Client",
    "ClientKind",
    "DriverError",
    "Snapshot",
    "YjsDriver",
    "array_push",
    "awareness_names",
    "doc_content",
    "doc_state",
    "doc_text",
    "map_delete",
    "map_set",
    "text_delete",
    "text_insert",
    "wait_all",
    "wait_converged",
    "xml_insert_paragraph",
    "y_array",
    "y_map",
    "y_text",
]

log = logging.getLogger(__name__)

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
DRIVER_JS: Final = REPO_ROOT / "tests" / "js" / "driver.mjs"

ClientKind = Literal["y-websocket", "hocuspocus-v2", "hocuspocus-v3", "hocuspocus-v4"]
CLIENT_KINDS: Final[tuple[ClientKind, ...]] = (
    "y-websocket",
    "hocuspocus-v2",
    "hocuspocus-v3",
    "hocuspocus-v4",
)

Snapshot = dict[str, Any]
Op = dict[str, Any]
Predicate = Callable[[Snapshot], bool]

_LINE_LIMIT: Final = 64 * 1024 * 1024  # a snapshot line carries whole documents
_PREDICATE_MISS: Final = (KeyError, IndexError, TypeError)
_UNCAUGHT_MARKERS: Final = ("uncaught exception", "unhandled rejection")


class DriverError(RuntimeError):
    """The driver answered a command with ``ok: false`` (or died before answering)."""


class YjsDriver:
    """Async context manager owning one ``node tests/js/driver.mjs`` process."""

    def __init__(
        self,
        *,
        node: str | None = None,
        command_timeout: float = 30.0,
        exit_timeout: float = 10.0,
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self._node = node or os.environ.get("NODE") or shutil.which("node") or "node"
        self._command_timeout = command_timeout
        self._exit_timeout = exit_timeout
        self._extra_env = dict(extra_env or {})
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._states: dict[str, Snapshot] = {}
        self._clients: dict[str, Client] = {}
        self._changed = asyncio.Condition()
        self._dead = False
        self.stderr_lines: list[str] = []

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> YjsDriver:
        if not DRIVER_JS.is_file():
            raise RuntimeError(f"{DRIVER_JS} is missing")
        if not (DRIVER_JS.parent / "node_modules").is_dir():
            raise RuntimeError(f"run `npm ci` in {DRIVER_JS.parent} first (node_modules is missing)")
        env = {**os.environ, **self._extra_env}
        self._proc = await asyncio.create_subprocess_exec(
            self._node,
            str(DRIVER_JS),
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._read_stdout(self._proc.stdout), name="yjs-driver-stdout"),
            asyncio.create_task(self._read_stderr(self._proc.stderr), name="yjs-driver-stderr"),
        ]
        try:
            if await self.command("ping") != "pong":
                raise RuntimeError("driver did not answer ping")
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None and not self._dead:
            with contextlib.suppress(DriverError, TimeoutError, ConnectionError):
                await self.command("exit", timeout=self._exit_timeout)
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), self._exit_timeout)
        except TimeoutError:
            log.warning("yjs driver did not exit within %ss; killing it", self._exit_timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        for task in self._readers:
            try:
                await asyncio.wait_for(task, self._exit_timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._readers = []

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    # -- output readers -------------------------------------------------------------------------

    async def _read_stdout(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                self._handle_line(line.decode("utf-8", errors="replace"))
                await self._notify()
        finally:
            self._dead = True
            err = DriverError(f"yjs driver exited (code {self.returncode}).{self._stderr_tail()}")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(err)
            self._pending.clear()
            await self._notify()

    async def _read_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode("utf-8", errors="replace").rstrip("\n")
            self.stderr_lines.append(text)
            log.debug("yjs driver: %s", text)

    def _handle_line(self, line: str) -> None:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            self.stderr_lines.append(f"[stdout, not JSON] {line.rstrip()}")
            return
        if not isinstance(msg, dict):
            self.stderr_lines.append(f"[stdout, not an object] {line.rstrip()}")
        elif msg.get("event") == "state":
            self._states[msg["client"]] = msg["state"]
        elif "id" in msg:
            fut = self._pending.pop(msg["id"], None) if msg["id"] is not None else None
            if fut is None:
                self.stderr_lines.append(f"[stdout, unmatched reply] {line.rstrip()}")
            elif not fut.done():
                if msg.get("ok"):
                    fut.set_result(msg.get("result"))
                else:
                    fut.set_exception(DriverError(str(msg.get("error"))))
                # A snapshot reply is at least as fresh as any state event before it.
                result = msg.get("result")
                if msg.get("ok") and isinstance(result, dict) and "docs" in result and "cid" in result:
                    self._states[result["cid"]] = result
        else:
            self.stderr_lines.append(f"[stdout, unknown line] {line.rstrip()}")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _stderr_tail(self, lines: int = 40) -> str:
        if not self.stderr_lines:
            return ""
        return "\n--- yjs driver stderr (tail) ---\n" + "\n".join(self.stderr_lines[-lines:])

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_lines)

    def uncaught_errors(self) -> list[str]:
        """stderr lines where Node reported an exception no provider handled (e.g. a v2/v3 provider
        throwing on an unknown message type)."""
        return [line for line in self.stderr_lines if any(m in line for m in _UNCAUGHT_MARKERS)]

    # -- commands -------------------------------------------------------------------------------

    async def command(self, cmd: str, *, timeout: float | None = None, **args: Any) -> Any:
        """Send one command and return its ``result``; raise :class:`DriverError` on ``ok: false``."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise DriverError("driver is not running")
        if self._dead:
            raise DriverError(f"yjs driver is not running.{self._stderr_tail()}")
        self._next_id += 1
        msg_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        line = json.dumps({"id": msg_id, "cmd": cmd, **args}, separators=(",", ":")) + "\n"
        try:
            proc.stdin.write(line.encode())
            await proc.stdin.drain()
        except ConnectionError as e:
            self._pending.pop(msg_id, None)
            raise DriverError(f"cannot write to yjs driver: {e}.{self._stderr_tail()}") from e
        limit = self._command_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(fut, limit)
        except TimeoutError:
            self._pending.pop(msg_id, None)
            raise DriverError(f"no reply to {cmd!r} within {limit}s.{self._stderr_tail()}") from None

    async def connect(
        self,
        cid: str,
        kind: ClientKind,
        url: str,
        docs: Sequence[str],
        token: str | None = None,
        user: str | None = None,
        *,
        params: Mapping[str, str] | None = None,
        options: Mapping[str, Any] | None = None,
        roots: Sequence[str] | None = None,
    ) -> Client:
        """Create client ``cid`` (returns once the providers exist; it does not wait for sync).

        ``url``: y-websocket server base (``ws://127.0.0.1:PORT/ws``; the room name is appended) or
        the Hocuspocus endpoint (one shared socket, one provider per name in ``docs``).
        ``token``: Hocuspocus only (default ``"token"``). ``user``: sets the local awareness
        ``{"user": {"name": user}}`` on every doc (a client without it keeps Yjs' initial ``{}``
        at clock 0, which servers following the reference do not spread).
        ``params``: query parameters (y-websocket ``params``; appended to the Hocuspocus URL).
        ``options``: passed through to the WebsocketProvider / HocuspocusProviderWebsocket
        constructor, e.g. ``{"maxBackoffTime": 200}`` or ``{"delay": 100, "maxDelay": 500}``.
        ``roots``: more roots for the snapshots to show (``"array:messages"``), for clients that
        only watch a root no op of this driver used yet.
        """
        args: dict[str, Any] = {"cid": cid, "kind": kind, "url": url, "docs": list(docs)}
        if token is not None:
            args["token"] = token
        if user is not None:
            args["user"] = user
        if params is not None:
            args["params"] = dict(params)
        if options is not None:
            args["options"] = dict(options)
        if roots is not None:
            args["roots"] = list(roots)
        await self.command("connect", **args)
        client = Client(self, cid, kind, list(docs))
        self._clients[cid] = client
        return client

    def client(self, cid: str) -> Client:
        return self._clients[cid]

    def latest(self, cid: str) -> Snapshot | None:
        """The most recent snapshot of ``cid`` the driver pushed (None before the first)."""
        return self._states.get(cid)

    # -- waiting --------------------------------------------------------------------------------

    async def wait_until(
        self,
        check: Callable[[], bool],
        *,
        timeout: float = 20.0,
        what: str = "condition",
        describe: Callable[[], str] | None = None,
    ) -> None:
        """Wait until ``check()`` is true, re-evaluating it after every state event.

        ``check`` may read any client's ``.state``. Raises AssertionError after ``timeout`` seconds.
        """
        last_error: BaseException | None = None
        satisfied = False

        def ready() -> bool:
            nonlocal last_error, satisfied
            try:
                satisfied = check()
            except _PREDICATE_MISS as e:  # a key not there yet counts as "not yet"
                last_error = e
                satisfied = False
            return satisfied or self._dead

        try:
            async with asyncio.timeout(timeout):
                async with self._changed:
                    await self._changed.wait_for(ready)
        except TimeoutError:
            details = describe() if describe is not None else ""
            hint = f"\nlast predicate error: {last_error!r}" if last_error is not None else ""
            raise AssertionError(
                f"timed out after {timeout}s waiting for: {what}{hint}\n{details}{self._stderr_tail()}"
            ) from None
        if not satisfied:
            raise AssertionError(f"yjs driver died while waiting for: {what}{self._stderr_tail()}")


class Client:
    """Handle on one client inside the driver (create it with :meth:`YjsDriver.connect`)."""

    def __init__(self, driver: YjsDriver, cid: str, kind: ClientKind, docs: list[str]) -> None:
        self.driver = driver
        self.cid = cid
        self.kind = kind
        self.docs = docs

    def __repr__(self) -> str:
        return f"Client({self.cid!r}, {self.kind!r}, docs={self.docs!r})"

    @property
    def state(self) -> Snapshot:
        """Latest pushed snapshot (no round trip)."""
        snap = self.driver.latest(self.cid)
        if snap is None:
            raise KeyError(f"no snapshot of client {self.cid!r} yet")
        return snap

    async def snapshot(self) -> Snapshot:
        """Ask the driver for a fresh snapshot."""
        result: Snapshot = await self.driver.command("snapshot", cid=self.cid)
        return result

    async def edit(self, doc: str, ops: Iterable[Op]) -> None:
        """Apply ``ops`` in one Yjs transaction on ``doc`` (see the op helpers below)."""
        await self.driver.command("edit", cid=self.cid, doc=doc, ops=list(ops))

    async def set_awareness(self, doc: str, state: Mapping[str, Any] | None) -> None:
        """``awareness.setLocalState(state)``; ``None`` removes the local state."""
        await self.driver.command(
            "awareness", cid=self.cid, doc=doc, state=None if state is None else dict(state)
        )

    async def disconnect(self) -> None:
        """Graceful: providers send their awareness removal, then the socket closes with a handshake."""
        await self.driver.command("disconnect", cid=self.cid)

    async def kill(self) -> None:
        """Abrupt: the TCP socket is destroyed (no close frame, no awareness removal, no reconnect)."""
        await self.driver.command("kill", cid=self.cid)

    async def wait_for(
        self,
        predicate: Predicate,
        timeout: float = 20.0,
        what: str = "condition",
    ) -> Snapshot:
        """Wait until ``predicate(snapshot)`` is true; return that snapshot.

        KeyError/IndexError/TypeError raised by the predicate count as "not yet". On timeout an
        AssertionError names ``what`` and shows the last snapshot.
        """

        def check() -> bool:
            snap = self.driver.latest(self.cid)
            return snap is not None and bool(predicate(snap))

        await self.driver.wait_until(
            check,
            timeout=timeout,
            what=f"{self.cid}: {what}",
            describe=lambda: f"last snapshot of {self.cid}: {_dump(self.driver.latest(self.cid))}",
        )
        return self.state

    async def wait_synced(self, doc: str | None = None, timeout: float = 20.0) -> Snapshot:
        """Wait until ``doc`` (default: all docs of this client) is synced and connected."""
        names = self.docs if doc is None else [doc]

        def synced(s: Snapshot) -> bool:
            return all(s["docs"][n]["synced"] and s["docs"][n]["status"] == "connected" for n in names)

        return await self.wait_for(synced, timeout, what=f"synced and connected: {names}")


async def wait_all(
    clients: Sequence[Client],
    predicate: Predicate,
    timeout: float = 20.0,
    what: str = "condition",
) -> None:
    """Wait until ``predicate`` holds for every client's snapshot at the same time."""
    if not clients:
        return
    driver = clients[0].driver

    def check() -> bool:
        for c in clients:
            snap = driver.latest(c.cid)
            if snap is None or not predicate(snap):
                return False
        return True

    def describe() -> str:
        return "\n".join(f"last snapshot of {c.cid}: {_dump(driver.latest(c.cid))}" for c in clients)

    names = ", ".join(c.cid for c in clients)
    await driver.wait_until(check, timeout=timeout, what=f"[{names}]: {what}", describe=describe)


async def wait_converged(
    clients: Sequence[Client],
    doc: str,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Wait until every client is synced on ``doc`` and all hold the same content; return it."""
    if not clients:
        return {}
    driver = clients[0].driver

    def check() -> bool:
        contents = []
        for c in clients:
            snap = driver.latest(c.cid)
            if snap is None or not doc_state(snap, doc)["synced"]:
                return False
            contents.append(doc_content(snap, doc))
        return all(x == contents[0] for x in contents)

    def describe() -> str:
        return "\n".join(f"last snapshot of {c.cid}: {_dump(driver.latest(c.cid))}" for c in clients)

    names = ", ".join(c.cid for c in clients)
    await driver.wait_until(check, timeout=timeout, what=f"[{names}] converge on {doc!r}", describe=describe)
    return doc_content(clients[0].state, doc)


def _dump(snap: Snapshot | None) -> str:
    text = json.dumps(snap, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 4000 else text[:4000] + "...(cut)"


# -- snapshot helpers -----------------------------------------------------------------------------


def doc_state(snapshot: Snapshot, doc: str) -> dict[str, Any]:
    state: dict[str, Any] = snapshot["docs"][doc]
    return state


def doc_text(snapshot: Snapshot, doc: str, name: str = "t") -> str:
    text: str = snapshot["docs"][doc]["text"][name]
    return text


def doc_content(snapshot: Snapshot, doc: str) -> dict[str, Any]:
    """The CRDT content of ``doc`` only (text, map, array, xml, other), for comparing clients."""
    d = snapshot["docs"][doc]
    return {k: d[k] for k in ("text", "map", "array", "xml", "other")}


def awareness_names(snapshot: Snapshot, doc: str) -> list[str]:
    """Sorted ``user.name`` values of the peers this client sees on ``doc``."""
    names = []
    for state in snapshot["docs"][doc]["awareness"].values():
        user = state.get("user") if isinstance(state, dict) else None
        if isinstance(user, dict) and isinstance(user.get("name"), str):
            names.append(user["name"])
    return sorted(names)


def awareness_notes(snapshot: Snapshot, doc: str) -> list[str]:
    """Sorted ``note`` values of the peers this client sees on ``doc``: a marker a test sets
    where, with authentication on, the server writes ``user`` itself (server/presence.py)."""
    notes = []
    for state in snapshot["docs"][doc]["awareness"].values():
        note = state.get("note") if isinstance(state, dict) else None
        if isinstance(note, str):
            notes.append(note)
    return sorted(notes)


# -- op builders ----------------------------------------------------------------------------------


Path = Sequence[int | str]


def _at(op: Op, path: Path | None, root: str) -> Op:
    if path is not None:
        op["path"] = list(path)
        op["root"] = root
    return op


def text_insert(
    value: str,
    index: int = 0,
    name: str = "t",
    *,
    path: Path | None = None,
    root: str = "array",
    format: Mapping[str, Any] | None = None,
) -> Op:
    op: Op = {"type": "text-insert", "name": name, "index": index, "value": value}
    if format is not None:
        op["format"] = dict(format)
    return _at(op, path, root)


def text_delete(
    index: int, length: int, name: str = "t", *, path: Path | None = None, root: str = "array"
) -> Op:
    return _at({"type": "text-delete", "name": name, "index": index, "length": length}, path, root)


def map_set(key: str, value: Any, name: str = "m", *, path: Path | None = None, root: str = "array") -> Op:
    return _at({"type": "map-set", "name": name, "key": key, "value": value}, path, root)


def map_delete(key: str, name: str = "m", *, path: Path | None = None, root: str = "array") -> Op:
    return _at({"type": "map-delete", "name": name, "key": key}, path, root)


def array_push(
    values: Sequence[Any], name: str = "a", *, path: Path | None = None, root: str = "array"
) -> Op:
    return _at({"type": "array-push", "name": name, "values": list(values)}, path, root)


def xml_insert_paragraph(text: str, index: int = 0, name: str = "default") -> Op:
    return {"type": "xml-insert-paragraph", "name": name, "index": index, "text": text}


def y_map(entries: Mapping[str, Any]) -> dict[str, Any]:
    """A new nested Y.Map holding `entries` (values may be typed too)."""
    return {"$type": "map", "entries": dict(entries)}


def y_text(text: str = "") -> dict[str, Any]:
    """A new nested Y.Text."""
    return {"$type": "text", "text": text}


def y_array(items: Sequence[Any]) -> dict[str, Any]:
    """A new nested Y.Array."""
    return {"$type": "array", "items": list(items)}
