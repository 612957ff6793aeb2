"""Connection admission (issue 7, items 6 and 7) against a real server: limits per address and
per node, refused and logged once; silent, trickling and oversized requests closed; /healthz
reachable through a flood of idle sockets, also at a 1024-descriptor limit; compaction
workers gone after `kill -9`; /readyz and the log say nothing per connection or about the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pycrdt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from clients.sync_client import SyncClient

from .hostile import metric, metrics, poll
from .server_process import HOST, SamenServer

pytestmark = pytest.mark.integration

# 127.0.0.1 (the tests' address) is trusted by default, hence exempt from per-address limits.
NOT_LOCAL = {"SAMEN_TRUSTED_PROXIES": "192.0.2.1"}


async def healthz(server: SamenServer) -> int:
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        return (await http.get(f"{server.http_url}/healthz")).status_code


@contextlib.asynccontextmanager
async def idle_sockets(server: SamenServer, count: int) -> AsyncIterator[list[socket.socket]]:
    """`count` TCP connections that never send a byte."""
    loop = asyncio.get_running_loop()
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sockets.append(sock)
            await loop.sock_connect(sock, (HOST, server.port))
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


async def read_until_closed(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    received = b""
    async with asyncio.timeout(30):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


async def test_connections_beyond_the_per_address_limit_are_refused_and_logged(tmp_path: Path) -> None:
    async with SamenServer(tmp_path / "data", env=NOT_LOCAL) as server:
        accepted: list[ClientConnection] = []
        refusals = 0
        try:
            for _ in range(3000):  # the flood of the issue; the default limit is 200
                try:
                    accepted.append(await connect(f"{server.ws_url}/flood"))
                except InvalidStatus as exc:
                    assert exc.response.status_code == 429
                    assert exc.response.headers["Retry-After"] == "10"
                    refusals += 1
                    if refusals == 100:
                        break
            assert len(accepted) == 200
            assert await healthz(server) == 200
            lines = [line for line in server.log_text().splitlines() if "refused a WebSocket" in line]
            assert (
                len(lines) == 1
                and "127.0.0.1" in lines[0]
                and "SAMEN_MAX_CONNECTIONS_PER_ADDRESS=200" in lines[0]
            )
            assert (
                metric(await metrics(server), "samen_connections_refused_total", reason="per_address") == 100
            )
            # One leaves, one more gets in.
            await accepted.pop().close()
            await poll(
                lambda: _connects(f"{server.ws_url}/flood", accepted), 20, "a free place for a new connection"
            )
        finally:
            await asyncio.gather(*(ws.close() for ws in accepted))


async def _connects(url: str, into: list[ClientConnection]) -> bool:
    try:
        into.append(await connect(url))
    except InvalidStatus:
        return False  # the server has not seen the close yet
    return True


async def test_the_node_limit_answers_503(tmp_path: Path) -> None:
    async with SamenServer(tmp_path / "data", env={"SAMEN_MAX_CONNECTIONS": "5"}) as server:
        async with contextlib.AsyncExitStack() as stack:
            for i in range(5):
                url = f"{server.ws_url}/d{i}" if i % 2 else server.hocuspocus_url
                await stack.enter_async_context(connect(url))
            with pytest.raises(InvalidStatus) as refused:
                await connect(server.hocuspocus_url)
            assert refused.value.response.status_code == 503
            assert await healthz(server) == 200
        assert "SAMEN_MAX_CONNECTIONS=5" in server.log_text()


async def test_silent_trickling_and_oversized_requests_are_closed(tmp_path: Path) -> None:
    env = {"SAMEN_HANDSHAKE_TIMEOUT": "1", "SAMEN_FIRST_MESSAGE_TIMEOUT": "2"}
    async with SamenServer(tmp_path / "data", env=env) as server:
        loop = asyncio.get_running_loop()
        async with idle_sockets(server, 1) as [silent]:
            assert (await read_until_closed(silent)).startswith(b"HTTP/1.1 408")

        async with idle_sockets(server, 1) as [trickler]:

            async def trickle() -> None:
                await loop.sock_sendall(trickler, b"GET /ws/doc HTTP/1.1\r\nHost: x\r\n")
                with contextlib.suppress(OSError):
                    for _ in range(200):  # a header byte every 50 ms: the timer is not reset by data
                        await loop.sock_sendall(trickler, b"X")
                        await asyncio.sleep(0.05)  # the pace of the attack, not a wait for an event

            async with asyncio.TaskGroup() as tasks:
                sender = tasks.create_task(trickle())
                assert (await read_until_closed(trickler)).startswith(b"HTTP/1.1 408")
                sender.cancel()

        async with idle_sockets(server, 1) as [big]:
            headers = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * (100 * 1024) + b"\r\n\r\n"
            with contextlib.suppress(OSError):
                await loop.sock_sendall(big, headers)
            assert (await read_until_closed(big)).startswith(b"HTTP/1.1 431")

        # Upgraded, then silent (pings are answered by the client library): closed with 1008.
        async with connect(server.hocuspocus_url) as quiet:
            async with asyncio.timeout(30):
                await quiet.wait_closed()
            assert quiet.close_code == 1008
        # A client that speaks is not affected.
        async with SyncClient(server.ws_url, "doc") as client:
            await client.wait_synced()
            client.doc.get("t", type=pycrdt.Text).insert(0, "still here")
            assert not client.closed.is_set()

        exposition = await metrics(server)
        assert metric(exposition, "samen_connections_refused_total", reason="handshake_timeout") == 2
        assert metric(exposition, "samen_connections_refused_total", reason="headers_too_big") == 1
        assert metric(exposition, "samen_connections_refused_total", reason="first_message_timeout") == 1
        log = server.log_text()
        assert "no complete request within 1 s" in log and "no message within 2 s" in log
        assert await healthz(server) == 200


async def test_healthz_stays_reachable_while_one_address_floods_idle_sockets(tmp_path: Path) -> None:
    async with SamenServer(tmp_path / "data", env=NOT_LOCAL) as server:
        async with idle_sockets(server, 300):
            # From the flooding address itself: the oldest idle socket makes room.
            for _ in range(3):
                assert await healthz(server) == 200
            async with SyncClient(server.ws_url, "doc") as client:
                await client.wait_synced()
        dropped = metric(await metrics(server), "samen_connections_refused_total", reason="idle_per_address")
        assert dropped >= 300 - 32


class LowDescriptorServer(SamenServer):
    """A server whose open-files limit is 1024, soft and hard (so it cannot raise it)."""

    def command(self) -> list[str]:
        prelude = (
            "import resource, runpy, sys; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024)); "
            "sys.argv = ['server', *sys.argv[1:]]; "
            "runpy.run_module('server', run_name='__main__', alter_sys=True)"
        )
        return [sys.executable, "-c", prelude, *super().command()[3:]]


async def test_healthz_stays_reachable_at_a_1024_descriptor_limit(tmp_path: Path) -> None:
    async with LowDescriptorServer(tmp_path / "data") as server:
        assert metric(await metrics(server), "samen_connection_limit") < 1024
        async with idle_sockets(server, 1000):
            for _ in range(3):
                assert await healthz(server) == 200
            async with SyncClient(server.ws_url, "doc") as client:
                await client.wait_synced()
            assert metric(await metrics(server), "samen_tcp_connections") < 1024
        assert metric(await metrics(server), "samen_connections_refused_total", reason="descriptors") > 0
        assert "descriptor limit" in server.log_text()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's bookkeeping is left


async def test_compaction_workers_exit_when_their_node_is_killed(tmp_path: Path) -> None:
    async with SamenServer(tmp_path / "data", env={"SAMEN_COMPACT_AFTER": "5"}) as server:
        assert server.pid is not None
        async with SyncClient(server.hocuspocus_url, "doc", protocol="hocuspocus") as client:
            text = client.doc.get("t", type=pycrdt.Text)
            for i in range(20):
                text.insert(0, f"{i} ")
            await client.wait_acknowledged(20)

        async def worker_started() -> bool:
            return any("multiprocessing" in _cmdline(pid) for pid in _children(server.pid or 0))

        await poll(worker_started, 30, "a compaction worker process")
        children = _children(server.pid)
        os.kill(server.pid, signal.SIGKILL)  # the node only, not its process group

        async def all_gone() -> bool:
            return not any(_alive(pid) for pid in children)

        await poll(all_gone, 30, f"the node's children {children} to exit")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


async def test_readyz_and_the_log_say_nothing_about_the_host_or_each_connection(samen: SamenServer) -> None:
    for _ in range(5):
        async with SyncClient(samen.ws_url, "doc") as client:
            await client.wait_synced()
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        body = (await http.get(f"{samen.http_url}/readyz")).json()
    assert body == {"ready": True, "problems": []}
    log = samen.log_text()
    assert "[accepted]" not in log and "connection open" not in log and "connection closed" not in log
    assert str(samen.pid) in log  # the node id is still in the start-up line
