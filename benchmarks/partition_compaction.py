"""Compaction work during a partition (issue 14, acceptance 5): a peer site acknowledges
nothing while N edits are appended to one document; the compactor runs as the server runs it
(every `compact_after` appends, a floor at the peer's cursor) on the SQLite store. Per 1,000
edits it reports the rows and bytes given to merges (all, and those of catch-up rows) and
the CPU seconds spent in compaction (all, and in catch-up merges), at several N: with linear
work the figures per 1,000 edits stay the same as N grows.

Then the peer acknowledges everything: the check is that it would have received every edit
(the log after its cursor rebuilds the whole text) and that the kept rows are gone after one
compaction. CPU is `time.process_time` around each compaction (nothing else runs meanwhile;
the merges' worker threads are included), merge CPU `time.thread_time` inside each merge.

    .venv/bin/python benchmarks/partition_compaction.py [--edits 5000,10000,20000,40000]
    # without the fix: the same script against the tree of an earlier commit
    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before .venv/bin/python benchmarks/partition_compaction.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycrdt

import server
from crdt.compaction import compact
from server.compaction import Compactor
from server.store.ports import AppendRow
from server.store.sqlite import SQLiteStore

AUTHORS = ["ann@amsterdam", "bob@amsterdam"]
DOC = "eng/long"


@dataclass
class Work:
    rows: int = 0
    bytes: int = 0
    cpu: float = 0.0


@dataclass
class Measured:
    all: Work = field(default_factory=Work)
    catchup: Work = field(default_factory=Work)
    compaction_cpu: float = 0.0
    compactions: int = 0
    max_kept: int = 0


class MeasuredMerge:
    """The compactor's merge, counting its inputs and CPU; `catchup` is set by the store
    wrapper while catch-up rows are being merged."""

    def __init__(self, measured: Measured) -> None:
        self.measured = measured
        self.catchup = False

    def __call__(self, updates: Sequence[bytes]) -> bytes:
        start = time.thread_time()
        merged = compact(updates)
        cpu = time.thread_time() - start
        for work in (self.measured.all, self.measured.catchup) if self.catchup else (self.measured.all,):
            work.rows += len(updates)
            work.bytes += sum(len(update) for update in updates)
            work.cpu += cpu
        return merged


def typed(n: int) -> list[AppendRow]:
    """`n` edits appending "<i>" to a shared Text, the authors taking turns."""
    doc = pycrdt.Doc()
    text = doc.get("t", type=pycrdt.Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(n):
        text += f"<{i}>"
    return [AppendRow(DOC, update, "", AUTHORS[i % len(AUTHORS)]) for i, update in enumerate(updates)]


def mark_catchup(store: SQLiteStore, merge: MeasuredMerge) -> None:
    """Flag the merges done for catch-up rows (the method's name differs before the fix)."""
    for name in ("merge_kept_rows", "squash_log_after"):
        method: Callable[..., Any] | None = getattr(store, name, None)
        if method is None:
            continue

        async def flagged(*args: Any, _method: Callable[..., Any] = method, **kwargs: Any) -> Any:
            merge.catchup = True
            try:
                return await _method(*args, **kwargs)
            finally:
                merge.catchup = False

        setattr(store, name, flagged)


async def baseline_cpu(edits: int, threshold: int, folder: Path) -> float:
    """CPU seconds in compaction for the same edits with no peer behind: the snapshot's own
    cost, which grows with the document whether or not a peer is partitioned."""
    store = SQLiteStore(folder / f"baseline-{edits}.sqlite3", synchronous="NORMAL")
    await store.open()
    compactor = Compactor(store, threshold)
    cpu = 0.0
    try:
        rows = typed(edits)
        for start in range(0, len(rows), threshold):
            await store.append(rows[start : start + threshold])
            before = time.process_time()
            await compactor.compact(DOC)
            cpu += time.process_time() - before
    finally:
        await store.close()
    return cpu


async def partition(edits: int, threshold: int, folder: Path) -> dict[str, Any]:
    store = SQLiteStore(folder / f"partition-{edits}.sqlite3", synchronous="NORMAL")
    await store.open()
    measured = Measured()
    merge = MeasuredMerge(measured)
    mark_catchup(store, merge)
    compactor = Compactor(store, threshold, merge=merge)
    cursor = 0  # the peer's: nothing acknowledged during the partition

    async def peer_floor(name: str) -> int | None:
        return cursor

    compactor.add_floor(peer_floor)
    rows = typed(edits)
    try:
        for start in range(0, len(rows), threshold):
            await store.append(rows[start : start + threshold])  # not measured
            before = time.process_time()
            await compactor.compact(DOC)
            measured.compaction_cpu += time.process_time() - before
            measured.compactions += 1
            measured.max_kept = max(measured.max_kept, await store.log_length(DOC))
        kept = await store.log_length(DOC)
        # What the peer would be sent after the partition: the whole text, nothing lost.
        peer = pycrdt.Doc()
        for row in await store.read_log_after(cursor, 10 * edits):
            peer.apply_update(row.update)
        complete = str(peer.get("t", type=pycrdt.Text)) == "".join(f"<{i}>" for i in range(edits))
        cursor = await store.last_seq()  # it caught up and acknowledged everything
        await compactor.compact(DOC)
        left = await store.log_length(DOC)
    finally:
        await store.close()
    per = 1000 / edits
    return {
        "edits": edits,
        "compactions": measured.compactions,
        "rows_merged_per_1000": round(measured.all.rows * per, 1),
        "catchup_rows_merged_per_1000": round(measured.catchup.rows * per, 1),
        "kib_merged_per_1000": round(measured.all.bytes * per / 1024, 1),
        "catchup_kib_merged_per_1000": round(measured.catchup.bytes * per / 1024, 1),
        "compaction_cpu_s_per_1000": round(measured.compaction_cpu * per, 4),
        "no_partition_cpu_s_per_1000": round(await baseline_cpu(edits, threshold, folder) * per, 4),
        "merge_cpu_s_per_1000": round(measured.all.cpu * per, 4),
        "catchup_merge_cpu_s_per_1000": round(measured.catchup.cpu * per, 4),
        "rows_kept_max": measured.max_kept,
        "rows_kept_at_end": kept,
        "peer_gets_everything": complete,
        "rows_left_after_ack": left,
    }


def commit_of(tree: Path) -> str:
    git = ["git", "-C", str(tree), "rev-parse", "--short=12", "HEAD"]
    try:
        return subprocess.run(git, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git tree)"


async def run(edits: list[int], threshold: int) -> list[dict[str, Any]]:
    columns = [
        "edits", "rows_merged_per_1000", "catchup_rows_merged_per_1000", "kib_merged_per_1000",
        "catchup_kib_merged_per_1000", "compaction_cpu_s_per_1000", "no_partition_cpu_s_per_1000",
        "catchup_merge_cpu_s_per_1000", "rows_kept_max", "peer_gets_everything", "rows_left_after_ack",
    ]  # fmt: skip
    print(" | ".join(columns))
    results = []
    with tempfile.TemporaryDirectory(prefix="samen-partition-") as folder:
        for n in edits:
            result = await partition(n, threshold, Path(folder))
            results.append(result)
            print(" | ".join(str(result[column]) for column in columns), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--edits", default="5000,10000,20000,40000", help="partition lengths, with commas")
    parser.add_argument("--compact-after", type=int, default=500, help="the compaction threshold")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    tree = Path(server.__file__).resolve().parent.parent
    commit = commit_of(tree)
    print(f"server code from {tree} (commit {commit}), compact_after={args.compact_after}")
    results = asyncio.run(run([int(n) for n in args.edits.split(",")], args.compact_after))
    if args.json is not None:
        args.json.write_text(json.dumps({"tree": str(tree), "commit": commit, "results": results}, indent=1))
    if not all(result["peer_gets_everything"] for result in results):
        sys.exit("the peer would have missed edits")


if __name__ == "__main__":
    main()
