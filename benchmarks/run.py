#!/usr/bin/env python3
"""Run the same load against Samen and the Node reference servers, one after the other.

    .venv/bin/python benchmarks/run.py [--scale full|quick] [--targets a,b] [--phases a,b]

Installs the npm packages (npm ci), then for every target and phase: starts the server on a
free 127.0.0.1 port (Samen with a fresh data folder), runs `node benchmarks/loadgen.mjs` for
that phase, stops the server (SIGTERM, then SIGKILL), and finally prints one markdown table.
Everything lands in benchmarks/.work/: results.json, results.md and one log per server run.
Standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
LOGS = WORK / "logs"
NODE_MODULES = BENCH / "node_modules"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
SAMEN_SRC = WORK / "samen-src"  # a snapshot of one commit: other work in the tree must not leak in

PHASES = ["propagation", "throughput", "memory", "sync", "maxrate"]
PHASE_TIMEOUT = {"propagation": 120, "throughput": 120, "memory": 180, "sync": 240, "maxrate": 300}
STOP_TIMEOUT = 15.0


@dataclass
class Target:
    key: str
    label: str
    server: str  # samen | y-websocket-server | hocuspocus
    protocol: str  # yws | hp
    loadgen_flags: list[str] = field(default_factory=list)
    node: bool = False  # a Node reference server (compared against)
    server_env: dict[str, str] = field(default_factory=dict)
    # Every document in space BENCH_SPACE; with `signed_in` the server requires authentication
    # and every client signs in as an editor of that space (the permission check's cost).
    in_space: bool = False
    signed_in: bool = False

    def url(self, port: int) -> str:
        if self.server == "samen":
            path = "/ws/" if self.protocol == "yws" else "/hocuspocus"
        else:
            path = "/"
        return f"ws://127.0.0.1:{port}{path}"


TARGETS = {
    t.key: t
    for t in [
        Target("samen-yws", "Samen, y-websocket endpoint", "samen", "yws"),
        Target("samen-hp", "Samen, Hocuspocus endpoint", "samen", "hp"),
        Target("y-websocket-server", "@y/websocket-server 0.1.5", "y-websocket-server", "yws", node=True),
        Target("hocuspocus", "@hocuspocus/server 4.7.0", "hocuspocus", "hp", node=True),
        # Diagnostic: Samen with permessage-deflate switched on (its default until 7eb0750);
        # the clients offer it as browsers do, the Node servers decline it.
        Target(
            "samen-yws-deflate",
            "Samen, y-websocket, SAMEN_WS_COMPRESSION=1 (diagnostic)",
            "samen",
            "yws",
            server_env={"SAMEN_WS_COMPRESSION": "1"},
        ),
        # Diagnostic: the same Samen endpoint when the client does not offer permessage-deflate.
        # The permission check's cost (issue 9): the same space, authentication off and on.
        Target(
            "samen-yws-space",
            "Samen, y-websocket, documents in a space, SAMEN_AUTH=off",
            "samen",
            "yws",
            in_space=True,
        ),
        Target(
            "samen-yws-auth",
            "Samen, y-websocket, documents in a space, SAMEN_AUTH=required",
            "samen",
            "yws",
            in_space=True,
            signed_in=True,
        ),
        Target(
            "samen-hp-space",
            "Samen, Hocuspocus, documents in a space, SAMEN_AUTH=off",
            "samen",
            "hp",
            in_space=True,
        ),
        Target(
            "samen-hp-auth",
            "Samen, Hocuspocus, documents in a space, SAMEN_AUTH=required",
            "samen",
            "hp",
            in_space=True,
            signed_in=True,
        ),
        Target(
            "samen-yws-nodeflate",
            "Samen, y-websocket, client without permessage-deflate (diagnostic)",
            "samen",
            "yws",
            ["--no-deflate"],
        ),
    ]
}
AUTH_TARGETS = ["samen-yws-space", "samen-yws-auth", "samen-hp-space", "samen-hp-auth"]
BENCH_SPACE = "bench"
DEFAULT_TARGETS = ["samen-yws", "samen-hp", "y-websocket-server", "hocuspocus", "samen-yws-deflate"]
SAMEN_ENV: dict[str, str] = {}  # --samen-env KEY=VALUE, for every Samen target

# ------------------------------------------------------------------------------------------
# Child processes: every one we start is stopped, even on errors or Ctrl-C.

_children: list[subprocess.Popen[bytes]] = []


def _stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int | None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  pid {proc.pid} ignored SIGTERM for {timeout:.0f}s; SIGKILL", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def _stop_all() -> None:
    for proc in list(_children):
        _stop(proc, 5.0)


def _on_signal(signum: int, _frame: object) -> None:
    _stop_all()
    sys.exit(128 + signum)


def _spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    _children.append(proc)
    return proc


# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(proc: subprocess.Popen[bytes], url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


SAMEN_MAIN = "import sys; from server.cli import main; sys.exit(main())"


def snapshot_samen(ref: str) -> str:
    """Export `ref` of this repository to SAMEN_SRC and check that Python imports Samen from
    there (it comes before the editable install on sys.path). Returns the commit id."""
    rev = ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"]
    commit = subprocess.run(rev, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    shutil.rmtree(SAMEN_SRC, ignore_errors=True)
    SAMEN_SRC.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(SAMEN_SRC)], input=archive, check=True)
    probe = subprocess.run(
        [str(VENV_PYTHON), "-P", "-c", "import server.cli; print(server.cli.__file__)"],
        env={**os.environ, "PYTHONPATH": str(SAMEN_SRC)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(probe).resolve().is_relative_to(SAMEN_SRC.resolve()):
        raise RuntimeError(f"Samen would be imported from {probe}, not from the snapshot {SAMEN_SRC}")
    return commit


def samen_cli(env: dict[str, str], *args: str) -> str:
    """Run `samen ARGS` from the snapshot; its stdout."""
    cmd = [str(VENV_PYTHON), "-P", "-c", SAMEN_MAIN, *args]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def prepare_space(env: dict[str, str], data_dir: Path) -> str:
    """Space BENCH_SPACE with one editor, `bench`, in a fresh data folder: that editor's token."""
    where = ["--data-dir", str(data_dir)]
    samen_cli(env, "user", "add", "admin", "--site-role", "admin", *where)  # else a start-up warning
    samen_cli(env, "user", "add", "bench", "--site-role", "member", *where)
    samen_cli(env, "space", "create", BENCH_SPACE, "--title", "Benchmark", *where)
    samen_cli(env, "space", "add-member", BENCH_SPACE, "bench", "--role", "editor", *where)
    return samen_cli(env, "token", "create", "bench", "--scope", "write", *where).split()[-1]


def start_server(
    target: Target, port: int, log: Path
) -> tuple[subprocess.Popen[bytes], Path | None, list[str]]:
    """The server process, its data folder (Samen) and the load generator flags it needs."""
    env = dict(os.environ)
    data_dir: Path | None = None
    flags: list[str] = []
    if target.server == "samen":
        data_dir = Path(tempfile.mkdtemp(prefix="samen-bench-"))
        env["PYTHONPATH"] = str(SAMEN_SRC)
        # The load clients connect anonymously unless the target signs them in;
        # --samen-env SAMEN_AUTH=required overrides.
        env["SAMEN_AUTH"] = "required" if target.signed_in else "off"
        env.update(SAMEN_ENV)
        if target.in_space:
            token = prepare_space(env, data_dir)
            flags += ["--doc-prefix", f"{BENCH_SPACE}/"]
            if target.signed_in:
                flags += ["--token", token]
        cmd = [str(VENV_PYTHON), "-P", "-c", SAMEN_MAIN, "serve"]  # -P: no cwd on sys.path
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
        health = f"http://127.0.0.1:{port}/healthz"
    elif target.server == "y-websocket-server":
        env.update(HOST="127.0.0.1", PORT=str(port))
        cmd = ["node", str(NODE_MODULES / "@y" / "websocket-server" / "src" / "server.js")]
        health = f"http://127.0.0.1:{port}/"
    elif target.server == "hocuspocus":
        env.update(PORT=str(port))
        cmd = ["node", str(BENCH / "hocuspocus-server.mjs")]
        health = f"http://127.0.0.1:{port}/"
    else:
        raise ValueError(target.server)
    env.update(target.server_env)
    proc = _spawn(cmd, log, env)
    try:
        wait_healthy(proc, health)
    except BaseException:
        _stop(proc)
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return proc, data_dir, flags


def system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds summed over all cores since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - fields[3] - fields[4]) / 100, total / 100


def process_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants (Samen runs compaction in a worker
    process: that is server work too, not "other work")."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    total = (int(fields[11]) + int(fields[12])) / 100
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = task.read_text().split()
        except OSError:
            continue
        total += sum(process_cpu(int(child)) for child in children)
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(threshold: float = 0.15, max_wait: float = 60.0) -> float:
    """Wait until the machine is mostly idle (other work skews every figure); returns the
    busy fraction of all cores over the last second."""
    deadline = time.monotonic() + max_wait
    warned = False
    while True:
        b0, t0 = system_cpu()
        time.sleep(1.0)
        b1, t1 = system_cpu()
        busy = (b1 - b0) / max(t1 - t0, 1e-9)
        if busy <= threshold or time.monotonic() > deadline:
            if busy > threshold:
                print(f"(machine still {busy:.0%} busy; measuring anyway)", end=" ", flush=True)
            return round(busy, 3)
        if not warned:
            print(f"(waiting: machine {busy:.0%} busy with other work)", end=" ", flush=True)
            warned = True


LOG_ISSUE = re.compile(r"\b(ERROR|CRITICAL|WARNING|Traceback|Exception|Error:)\b")


def log_issues(log: Path) -> list[str]:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if LOG_ISSUE.search(line)]


MAX_OTHER_CORES = 0.25  # rerun a phase when other work used more than this many cores meanwhile
ATTEMPTS = 2


def run_phase(target: Target, phase: str, scale: str) -> dict[str, Any]:
    """Run one phase; again (up to ATTEMPTS in all) when other work on the machine competed
    for the CPU meanwhile. Keeps the least disturbed attempt."""
    attempts: list[dict[str, Any]] = []
    for _ in range(ATTEMPTS):
        rec = run_phase_once(target, phase, scale)
        attempts.append(rec)
        if rec.get("failure") or rec.get("server_exit") or _other_cores(rec) <= MAX_OTHER_CORES:
            break
        print(f"(other work used {_other_cores(rec):.2f} cores; again)", end=" ", flush=True)
    best = min(attempts, key=_other_cores)
    best["attempts"] = len(attempts)
    best["other_cores_per_attempt"] = [round(_other_cores(r), 2) for r in attempts]
    return best


def _other_cores(rec: dict[str, Any]) -> float:
    cpu = rec.get("cpu_seconds") or {}
    wall = cpu.get("wall") or 0
    return float(cpu.get("everything_else", 0)) / wall if wall else 0.0


def run_phase_once(target: Target, phase: str, scale: str) -> dict[str, Any]:
    port = free_port()
    log = LOGS / f"{target.key}-{phase}.log"
    log.unlink(missing_ok=True)
    out = WORK / f"{target.key}-{phase}.json"
    out.unlink(missing_ok=True)
    background = wait_quiet()
    started = time.monotonic()
    proc, data_dir, server_flags = start_server(target, port, log)
    record: dict[str, Any] = {"server_pid": proc.pid, "server_log": str(log.relative_to(ROOT))}
    try:
        cmd = [
            "node",
            str(BENCH / "loadgen.mjs"),
            "--phase",
            phase,
            "--protocol",
            target.protocol,
            "--url",
            target.url(port),
            "--pid",
            str(proc.pid),
            "--pid-children",  # Samen compacts in a worker process: count it as server CPU
            "--scale",
            scale,
            "--out",
            str(out),
            *target.loadgen_flags,
            *server_flags,
        ]
        sys0, srv0, gen0, t0 = system_cpu()[0], process_cpu(proc.pid), children_cpu(), time.monotonic()
        gen = subprocess.Popen(cmd, cwd=BENCH, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _children.append(gen)
        try:
            _stdout, stderr = gen.communicate(timeout=PHASE_TIMEOUT[phase])
        except subprocess.TimeoutExpired:
            _stop(gen, 5.0)
            record["failure"] = f"load generator timed out after {PHASE_TIMEOUT[phase]}s"
            stderr = b""
        else:
            _children.remove(gen)
        server_s, gen_s = process_cpu(proc.pid) - srv0, children_cpu() - gen0
        record["cpu_seconds"] = {
            "wall": round(time.monotonic() - t0, 1),
            "server": round(server_s, 2),
            "load_generator": round(gen_s, 2),
            "everything_else": round(system_cpu()[0] - sys0 - server_s - gen_s, 2),
            "busy_before_start": background,
        }
        if out.exists():
            record.update(json.loads(out.read_text()))
        elif "failure" not in record:
            tail = stderr.decode(errors="replace")[-2000:]
            record["failure"] = f"load generator exited {gen.returncode}: {tail}"
        if proc.poll() is not None:
            record["server_exit"] = f"server exited with {proc.returncode} during the phase"
    finally:
        code = _stop(proc)
        record["server_stop_code"] = code
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    issues = log_issues(log)
    record["server_log_issues"] = {"count": len(issues), "first": issues[:10]}
    record["wall_seconds"] = round(time.monotonic() - started, 1)
    return record


# ------------------------------------------------------------------------------------------
# Environment and report


def _cmd(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def environment() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "python": _cmd([str(ROOT / ".venv" / "bin" / "python"), "--version"]),
        "node": _cmd(["node", "--version"]),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


# Row metrics: (column, phase, path to the value, lower is better?)
METRICS: list[tuple[str, str, tuple[str, ...], bool]] = [
    ("propagation p50 ms", "propagation", ("result", "latencyMs", "p50"), True),
    ("propagation p99 ms", "propagation", ("result", "latencyMs", "p99"), True),
    ("delivered updates/s", "throughput", ("result", "deliveredPerSecond"), False),
    ("throughput p99 ms", "throughput", ("result", "latencyMs", "p99"), True),
    ("server CPU µs per delivered update", "throughput", ("result", "serverCpuMicrosPerDelivered"), True),
    ("KiB per idle conn", "memory", ("result", "kibPerConnection"), True),
    ("sync 30k-edit doc ms", "sync", ("result", "medianFromOpenMs"), True),
    ("max edits/s (p99 ≤ 50 ms)", "maxrate", ("result", "maxSustainedRate"), False),
]


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        if v >= 1000:
            return f"{v:,.0f}"
        if v >= 100:
            return f"{v:.0f}"
        return f"{v:.1f}" if v >= 10 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def cell(results: dict[str, Any], key: str, phase: str, path: tuple[str, ...]) -> Any:
    rec = _get(results, key, phase)
    if rec is None:
        return None
    if rec.get("failure"):
        return "failed"
    v = _get(rec, *path)
    if phase == "maxrate" and lower_bound(rec):
        return f"≥ {_fmt(v)}"
    if path == ("result", "deliveredPerSecond") and generator_saturated(rec):
        return f"{_fmt(v)} *"
    return v


def generator_saturated(rec: dict[str, Any] | None) -> bool:
    """The load generator used ≥ 0.9 cores in the throughput window: the figure is its limit too."""
    res = _get(rec, "result") or {}
    secs, gen = res.get("measuredSeconds"), res.get("generatorCpuSeconds")
    return bool(secs and gen is not None and gen / secs >= 0.9)


def lower_bound(rec: dict[str, Any] | None) -> bool:
    """A max-rate figure the server may exceed: the ramp ended at its cap or time budget, or the
    first failing step failed because the load generator could not keep up."""
    res = _get(rec, "result") or {}
    return bool(res.get("reachedMaxRate") or res.get("stoppedByBudget") or res.get("generatorBound"))


def table(results: dict[str, Any], keys: list[str]) -> str:
    head = "| server | " + " | ".join(m[0] for m in METRICS) + " |"
    sep = "|---|" + "---:|" * len(METRICS)
    rows = [head, sep]
    for key in keys:
        cells = [_fmt(cell(results, key, phase, path)) for _, phase, path, _ in METRICS]
        rows.append(f"| {TARGETS[key].label} | " + " | ".join(cells) + " |")
    rows.append("")
    rows.append(
        "\\* the load generator used ≥ 0.9 cores meanwhile: on 2 cores it was a limit too, so the "
        "server may deliver more (compare the CPU µs per update)."
    )
    return "\n".join(rows)


def diagnostics(results: dict[str, Any], keys: list[str]) -> str:
    """Who was busy in the saturating phases: a load generator near 1.0 cores is the limit."""
    rows = [
        "| server | throughput: server cores | generator cores | maxrate: first failing step | "
        "its p99 ms | server cores | generator cores |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in keys:
        tp = _get(results, key, "throughput", "result") or {}
        secs = tp.get("measuredSeconds") or 0
        srv = tp.get("serverCpuSeconds")
        gen = tp.get("generatorCpuSeconds")
        mr = _get(results, key, "maxrate", "result") or {}
        fail = next((st for st in reversed(mr.get("steps") or []) if not st.get("pass")), None)
        cells = [
            _fmt(srv / secs) if srv is not None and secs else None,
            _fmt(gen / secs) if gen is not None and secs else None,
            _fmt(fail.get("rate")) if fail else "none",
            _fmt(_get(fail, "latencyMs", "p99")) if fail else None,
            _fmt(fail.get("serverCores")) if fail else None,
            _fmt(fail.get("generatorCores")) if fail else None,
        ]
        rows.append(f"| {TARGETS[key].label} | " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(rows)


def comparison(results: dict[str, Any], keys: list[str]) -> list[str]:
    """For each Samen row and metric: how it compares with the faster of the Node servers."""
    nodes = [k for k in keys if TARGETS[k].node]
    samens = [k for k in keys if not TARGETS[k].node]
    lines = []
    for name, phase, path, lower in METRICS:
        best: tuple[float, str] | None = None
        for k in nodes:
            v = _get(results, k, phase, *path)
            if isinstance(v, int | float) and (best is None or (v < best[0] if lower else v > best[0])):
                best = (float(v), k)
        if best is None:
            continue
        for k in samens:
            v = _get(results, k, phase, *path)
            if not isinstance(v, int | float):
                continue
            ok = v <= best[0] if lower else v >= best[0]
            ratio = (v / best[0] if lower else best[0] / v) if v and best[0] else float("inf")
            verdict = "meets target" if ok else f"{ratio:.1f}× {'higher' if lower else 'lower'}"
            if phase == "maxrate" and lower_bound(_get(results, best[1], phase)) and not ok:
                verdict = "at least " + verdict
            if phase == "maxrate" and lower_bound(_get(results, k, phase)) and not ok:
                verdict += " (Samen's figure is a lower bound)"
            lines.append(
                f"- {name}: {TARGETS[k].label} {_fmt(float(v))} vs {TARGETS[best[1]].label} "
                f"{_fmt(best[0])} → {verdict}"
            )
    return lines


def install_npm() -> None:
    stamp = NODE_MODULES / ".installed"
    lock = BENCH / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    print("installing npm packages (npm ci --prefix benchmarks)...", flush=True)
    subprocess.run(
        ["npm", "ci", "--prefix", str(BENCH), "--no-audit", "--no-fund", "--loglevel=error"],
        check=True,
        cwd=ROOT,
    )
    stamp.touch()


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < 2500:
        print(f"warning: open-file limit {soft} is low for 1000 connections (ulimit -n)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=["full", "quick"], default="full")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS), help=f"from {', '.join(TARGETS)}")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"from {', '.join(PHASES)}")
    parser.add_argument("--skip-install", action="store_true", help="do not run npm ci")
    parser.add_argument(
        "--samen-ref", default="HEAD", help="commit of Samen to benchmark (exported to .work/samen-src)"
    )
    parser.add_argument(
        "--samen-env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for Samen"
    )
    parser.add_argument("--results", default=str(WORK / "results.json"), help="where to write the JSON")
    args = parser.parse_args(argv)
    keys = [k for k in args.targets.split(",") if k]
    phases = [p for p in args.phases.split(",") if p]
    for k in keys:
        if k not in TARGETS:
            parser.error(f"unknown target {k}")
    for p in phases:
        if p not in PHASES:
            parser.error(f"unknown phase {p}")
    if not VENV_PYTHON.exists() and any(TARGETS[k].server == "samen" for k in keys):
        parser.error(f"{VENV_PYTHON} is missing: run `make install` first")

    for item in args.samen_env:
        k, sep, v = item.partition("=")
        if not sep:
            parser.error(f"--samen-env wants KEY=VALUE, not {item!r}")
        SAMEN_ENV[k] = v
    atexit.register(_stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    raise_nofile()
    LOGS.mkdir(parents=True, exist_ok=True)
    if not args.skip_install:
        install_npm()

    env = environment()
    if any(TARGETS[k].server == "samen" for k in keys):
        env["samen_commit"] = snapshot_samen(args.samen_ref)
        print(f"Samen at {env['samen_commit'][:12]} (exported to {SAMEN_SRC.relative_to(ROOT)})", flush=True)
    results: dict[str, Any] = {}
    began = time.monotonic()
    for key in keys:
        target = TARGETS[key]
        results[key] = {}
        for phase in phases:
            print(f"{target.label}: {phase}...", end=" ", flush=True)
            rec = run_phase(target, phase, args.scale)
            results[key][phase] = rec
            note = rec.get("failure") or rec.get("server_exit")
            summary = "FAILED: " + str(note).splitlines()[0] if note else f"{rec.get('wall_seconds')}s"
            print(summary, flush=True)
    env["total_seconds"] = round(time.monotonic() - began, 1)

    md = table(results, keys) + "\n\n" + diagnostics(results, keys)
    compare = comparison(results, keys)
    env["samen_env"] = SAMEN_ENV
    report = {"environment": env, "scale": args.scale, "targets": keys, "phases": phases, "results": results}
    results_file = Path(args.results)
    results_file.write_text(json.dumps(report, indent=1) + "\n")
    results_file.with_suffix(".md").write_text(md + "\n\n" + "\n".join(compare) + "\n")
    print()
    print(f"{env['date']}, {env['cpus']} × {env['cpu_model']}, {env['memory']}, ", end="")
    print(f"{env['python']}, node {env['node']}, Samen {env.get('samen_commit', '?')[:12]}")
    print()
    print(md)
    print()
    print("\n".join(compare))
    print()
    problems = [
        f"{k}/{p}: {r.get('failure') or r.get('server_exit')}"
        for k, per in results.items()
        for p, r in per.items()
        if r.get("failure") or r.get("server_exit")
    ]
    for k, per in results.items():
        for p, r in per.items():
            wire = r.get("wire") or {}
            if wire.get("unexpectedCloseCount") or wire.get("errors") or wire.get("unknownFrames"):
                problems.append(f"{k}/{p}: wire trouble {json.dumps(wire)[:400]}")
            if _get(r, "server_log_issues", "count"):
                count = r["server_log_issues"]["count"]
                problems.append(f"{k}/{p}: {count} warning/error lines in {r['server_log']}")
    if problems:
        print("Problems:")
        for line in problems:
            print(f"- {line}")
    print(f"results: {results_file}; total {env['total_seconds']}s")
    failed = any(r.get("failure") or r.get("server_exit") for per in results.values() for r in per.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
