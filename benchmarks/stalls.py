#!/usr/bin/env python3
"""How long the others wait while one client attacks a node: stalls, before and after limits.

    .venv/bin/python benchmarks/stalls.py [--refs e7e773d,HEAD] [--attacks a,b] [--results FILE]

For every ref (a `git archive` of that commit, run with the project's .venv) and every attack,
a fresh `samen serve` on a free 127.0.0.1 port with default settings (and
SAMEN_TRUSTED_PROXIES=192.0.2.1, so 127.0.0.1 counts as a client address). A probe (two
clients of another document, in this process) sends one edit every 20 ms and records how
long each takes to reach the other client, from 2 s before the attack until 2 s after it;
the attack runs in its own process (`stalls.py attack NAME --port P`) so it does not slow the
probe's event loop. Recorded: the probe's p50 / p99 / max latency, the longest gap between
two deliveries, the server's peak RSS growth (from /proc, sampled every 50 ms), and what
happened to the attacker. Attacks (issue 7):

- awareness-bomb: one awareness message with 1,000,000 client ids (6.7 MiB), then three
  clients join that document (each gets the presence greeting).
- non-reading: a client of a busy document stops reading; a writer sends 150 MiB of updates
  (16 KiB inserts, each deleted again).
- syncstep1-spam: a client that does not read asks 60 times for an 8 MiB document.
- connection-flood: 3000 WebSocket upgrades and 1000 silent TCP connections from one address;
  also records how long /healthz takes meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # the probe and the attacks use this tree's client and codecs

import pycrdt  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402
from websockets.exceptions import InvalidStatus, WebSocketException  # noqa: E402

from clients.sync_client import SyncClient  # noqa: E402
from protocol import ywebsocket  # noqa: E402
from protocol.lib0 import var_uint  # noqa: E402
from protocol.messages import AwarenessMessage, SyncStep1  # noqa: E402

WORK = BENCH / ".work"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
ATTACKS = ["awareness-bomb", "non-reading", "syncstep1-spam", "connection-flood"]
SAMEN_MAIN = "import sys; from server.cli import main; sys.exit(main())"
SERVER_ENV = {"SAMEN_TRUSTED_PROXIES": "192.0.2.1"}
PROBE_INTERVAL = 0.02
QUIET = 2.0  # probe seconds before and after each attack

# -- the server ---------------------------------------------------------------------------


def snapshot(ref: str) -> tuple[str, Path]:
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    target = WORK / f"stalls-src-{commit[:12]}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return commit, target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(src: Path, port: int, log: Path) -> tuple[subprocess.Popen[bytes], Path]:
    data = Path(tempfile.mkdtemp(prefix="samen-stalls-"))
    env = {**os.environ, "PYTHONPATH": str(src), **SERVER_ENV}
    cmd = [str(VENV_PYTHON), "-P", "-c", SAMEN_MAIN, "serve", "--port", str(port), "--data-dir", str(data)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=src)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1),
        ):
            return proc, data
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError("server did not answer /healthz")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# -- the probe ----------------------------------------------------------------------------


class Probe:
    """Two clients of document "probe": one edit every 20 ms, timed to the other client."""

    def __init__(self, port: int) -> None:
        self.url = f"ws://127.0.0.1:{port}/ws"
        self.sent: dict[int, float] = {}  # edit number -> sent at
        self.delivered: dict[int, float] = {}  # edit number -> delivered at
        self._seen = 0
        self._progress = asyncio.Event()

    async def run(self, stop_event: asyncio.Event) -> None:
        async with SyncClient(self.url, "probe") as writer, SyncClient(self.url, "probe") as reader:
            await writer.wait_synced()
            await reader.wait_synced()
            async with asyncio.TaskGroup() as tasks:
                watching = tasks.create_task(self._watch(reader))
                text = writer.doc.get("t", type=pycrdt.Text)
                while not stop_event.is_set():
                    self.sent[len(self.sent) + 1] = time.monotonic()
                    text.insert(len(text), "x")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop_event.wait(), PROBE_INTERVAL)
                watching.cancel()

    async def _watch(self, reader: SyncClient) -> None:
        # SyncClient re-checks the predicate after every message it handles, so `now` is when
        # the edit arrived (reading the document inside a pycrdt observer is not allowed).
        text = reader.doc.get("t", type=pycrdt.Text)
        while True:
            await reader.wait_for(lambda: len(text) > self._seen, timeout=3600)
            now, length = time.monotonic(), len(text)
            for i in range(self._seen + 1, length + 1):
                self.delivered[i] = now
            self._seen = length
            self._progress.set()

    async def caught_up(self) -> None:
        """Wait until every edit sent so far has been delivered."""
        last = len(self.sent)
        while self._seen < last:
            self._progress.clear()
            await self._progress.wait()

    def summary(self, start: float, end: float) -> dict[str, float]:
        """The edits sent between `start` and `end`: latency to delivery (an edit never
        delivered counts as lost), and the longest time with no delivery in that span."""
        sent = {i: t for i, t in self.sent.items() if start <= t <= end}
        latencies = sorted((self.delivered[i] - t) * 1000 for i, t in sent.items() if i in self.delivered)
        if not latencies:
            return {
                "p50_ms": float("nan"),
                "p99_ms": float("nan"),
                "max_ms": float("nan"),
                "gap_ms": float("nan"),
            }
        times = sorted({start, end, *(t for t in self.delivered.values() if start <= t <= end)})
        return {
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "max_ms": latencies[-1],
            "gap_ms": max((b - a) * 1000 for a, b in itertools.pairwise(times)),
            "edits": len(sent),
            "lost": len(sent) - len(latencies),
        }


async def measure(ref: str, src: Path, attack: str) -> dict[str, Any]:
    port = free_port()
    log = WORK / f"stalls-{ref}-{attack}.log"
    log.unlink(missing_ok=True)
    proc, data = start_server(src, port, log)
    try:
        probe = Probe(port)
        done = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(probe.run(done))
            await asyncio.sleep(QUIET)  # the probe's quiet baseline
            base_rss = rss_kib(proc.pid)
            peak = base_rss
            start = time.monotonic()
            attacker = await asyncio.create_subprocess_exec(
                str(VENV_PYTHON),
                __file__,
                "attack",
                attack,
                "--port",
                str(port),
                stdout=asyncio.subprocess.PIPE,
            )
            reading = tasks.create_task(attacker.communicate())
            while True:
                peak = max(peak, rss_kib(proc.pid))
                if reading.done():
                    break
                await asyncio.sleep(0.05)  # RSS sampling interval
            end = time.monotonic()
            await asyncio.sleep(QUIET)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):  # edits never delivered count as lost
                    await probe.caught_up()
            done.set()
        out = reading.result()[0].decode().strip().splitlines()
        result = json.loads(out[-1]) if out else {"error": "attacker printed nothing"}
        return {
            "ref": ref,
            "attack": attack,
            "attack_seconds": round(end - start, 2),
            "rss_growth_mib": round((peak - base_rss) / 1024, 1),
            "before": probe.summary(start - QUIET, start),
            "during": probe.summary(start, end),
            "attacker": result,
            "server_alive": proc.poll() is None,
        }
    finally:
        stop(proc)
        shutil.rmtree(data, ignore_errors=True)


# -- the attacks (each in its own process) -------------------------------------------------


def _masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    size = (
        bytes([0x80 | n])
        if n < 126
        else bytes([0xFE]) + n.to_bytes(2, "big")
        if n < 65536
        else bytes([0xFF]) + n.to_bytes(8, "big")
    )
    return b"\x82" + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _non_reading(port: int, path: str, frames: list[bytes]) -> socket.socket:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode(),
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += await loop.sock_recv(sock, 1)
    for frame in frames:
        await loop.sock_sendall(sock, _masked(frame))
    return sock


async def _closed_by_server(sock: socket.socket) -> bool:
    """Read what is left on this (so far unread) connection: whether the server closes it."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(20):
            while await loop.sock_recv(sock, 1 << 20):
                pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


async def attack_awareness_bomb(port: int) -> dict[str, Any]:
    bomb = var_uint(1_000_000) + b"".join(var_uint(c) + b"\x01\x02{}" for c in range(1, 1_000_001))
    async with connect(f"ws://127.0.0.1:{port}/ws/bomb", max_size=None, open_timeout=120) as ws:
        await ws.send(ywebsocket.encode(AwarenessMessage(bomb)))
        greetings = []
        for _ in range(3):
            async with connect(f"ws://127.0.0.1:{port}/ws/bomb", max_size=None, open_timeout=120) as joiner:
                started, size = time.monotonic(), 0
                await joiner.send(ywebsocket.encode(SyncStep1(b"\x00")))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(120):
                        while True:  # the greeting (SyncStep1, presence), then our SyncStep2
                            frame = await joiner.recv()
                            size += len(frame)
                            if isinstance(frame, bytes) and frame[:2] == b"\x00\x01":
                                break
                greetings.append({"seconds": round(time.monotonic() - started, 2), "bytes": size})
        closed = ws.close_code
    return {"bomb_bytes": len(bomb), "joiner_greetings": greetings, "bomber_close": closed}


async def attack_non_reading(port: int) -> dict[str, Any]:
    rounds = 9600  # 150 MiB of 16 KiB inserts, each deleted again
    url = f"ws://127.0.0.1:{port}/ws"
    async with SyncClient(url, "busy") as writer:
        await writer.wait_synced()
        hostile = await _non_reading(port, "/ws/busy", [ywebsocket.encode(SyncStep1(b"\x00"))])
        text = writer.doc.get("t", type=pycrdt.Text)
        for _ in range(rounds):
            text.insert(0, "x" * (16 * 1024))
            text.insert(0, "y")
            del text[1 : 1 + 16 * 1024]
        async with SyncClient(url, "busy") as reader:  # the room still works
            await reader.wait_for(lambda: len(str(reader.doc.get("t", type=pycrdt.Text))) == rounds, 300)
        closed = await _closed_by_server(hostile)
        hostile.close()
    return {"sent_mib": rounds // 64, "non_reader_dropped": closed}


async def attack_syncstep1_spam(port: int) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{port}/ws"
    async with SyncClient(url, "big") as writer:
        await writer.wait_synced()
        text = writer.doc.get("t", type=pycrdt.Text)
        text.insert(0, "y" * (8 << 20))  # one update, so no honest client lags behind it
        async with SyncClient(url, "big") as reader:
            await reader.wait_for(lambda: len(str(reader.doc.get("t", type=pycrdt.Text))) == 8 << 20, 120)
        started = time.monotonic()
        hostile = await _non_reading(port, "/ws/big", [ywebsocket.encode(SyncStep1(b"\x00"))] * 60)
        await asyncio.sleep(5)  # what the server does with them meanwhile is what is measured
        closed = await _closed_by_server(hostile)
        hostile.close()
    return {
        "document_mib": 8,
        "requests": 60,
        "spammer_dropped": closed,
        "seconds": round(time.monotonic() - started, 1),
    }


async def attack_connection_flood(port: int) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    loop = asyncio.get_running_loop()
    sockets, websockets, refused, failed = [], [], 0, 0
    healthz: list[float] = []

    async def check_health() -> None:
        started = time.monotonic()
        try:
            await asyncio.to_thread(urllib.request.urlopen, f"http://127.0.0.1:{port}/healthz", timeout=30)
            healthz.append(time.monotonic() - started)
        except OSError:
            healthz.append(float("inf"))

    try:
        for i in range(3000):
            try:
                websockets.append(await connect(f"ws://127.0.0.1:{port}/ws/flood{i % 50}", open_timeout=30))
            except InvalidStatus:
                refused += 1
            except (OSError, TimeoutError, WebSocketException):
                failed += 1
            if i % 500 == 0:
                await check_health()
        for _ in range(1000):
            sock = socket.socket()
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                await loop.sock_connect(sock, ("127.0.0.1", port))
            sockets.append(sock)
        for _ in range(3):
            await check_health()
    finally:
        for sock in sockets:
            sock.close()
        await asyncio.gather(*(ws.close() for ws in websockets), return_exceptions=True)
    worst = max(healthz)
    return {
        "websockets_accepted": len(websockets),
        "refused": refused,
        "failed": failed,
        "healthz_worst_s": round(worst, 3) if worst != float("inf") else "failed",
    }


ATTACK_FUNCTIONS = {
    "awareness-bomb": attack_awareness_bomb,
    "non-reading": attack_non_reading,
    "syncstep1-spam": attack_syncstep1_spam,
    "connection-flood": attack_connection_flood,
}


# -- report ---------------------------------------------------------------------------------


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| attack | ref | probe p50 / p99 / max ms during (before) | longest gap ms"
        " | server RSS growth MiB | attacker |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in results:
        d, b = r["during"], r["before"]
        rows.append(
            f"| {r['attack']} | `{r['ref']}` | {d['p50_ms']:.1f} / {d['p99_ms']:.0f} / {d['max_ms']:.0f} "
            f"({b['p50_ms']:.1f} / {b['p99_ms']:.0f} / {b['max_ms']:.0f}) | {d['gap_ms']:.0f} | "
            f"{r['rss_growth_mib']} | {json.dumps(r['attacker'], separators=(', ', ': '))} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    attack = sub.add_parser("attack", help="(internal) run one attack against --port")
    attack.add_argument("name", choices=ATTACKS)
    attack.add_argument("--port", type=int, required=True)
    parser.add_argument("--refs", default="e7e773d,HEAD")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--results", type=Path, default=WORK / "stalls.json")
    args = parser.parse_args(argv)
    if args.command == "attack":
        print(json.dumps(asyncio.run(ATTACK_FUNCTIONS[args.name](args.port))))
        return 0
    WORK.mkdir(exist_ok=True)
    results = []
    for ref in args.refs.split(","):
        commit, src = snapshot(ref)
        for name in args.attacks.split(","):
            print(f"{ref} ({commit[:9]}): {name}...", file=sys.stderr, flush=True)
            result = asyncio.run(measure(ref, src, name))
            result["commit"] = commit
            results.append(result)
            print(json.dumps(result), file=sys.stderr, flush=True)
    args.results.write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
