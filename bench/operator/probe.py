"""Run `reasoning operator` from a given source tree, timing every reconcile of every run.

Used by bench_operator.py for both the baseline (an older tree) and the current one: it wraps
`reasoning_operator.handlers._reconcile`, the one entry every event and every resync pass goes through in
both, and writes `{namespace/name: [first, last, max_gap, count]}` (monotonic seconds) to a JSON file every
second, with the count of full reconciles (not memo hits) of each run. With `--shards N` every shard
process writes its own STATS_JSON.<pid>.
Usage: probe.py SRC_DIR STATS_JSON -- <operator arguments>."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


class Stats:
    """One process's timings; a forked shard starts its own (shards.py forks after this module loaded)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.runs: dict[str, list[float]] = {}
        self.full: dict[str, int] = {}
        self.guard = threading.Lock()
        threading.Thread(target=self.dump, daemon=True).start()

    def dump(self) -> None:
        while True:
            time.sleep(1.0)
            with self.guard:
                text = json.dumps({"now": time.monotonic(), "runs": self.runs, "full": self.full})
            tmp = Path(self.path + ".tmp")
            tmp.write_text(text)
            tmp.replace(self.path)


def main() -> None:
    src, stats_path, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: probe.py SRC_DIR STATS_JSON -- ARGS"
    sys.path[:0] = [str(Path(src) / "operator"), str(Path(src) / "jobs")]
    from reasoning_operator import cli, handlers

    state = [Stats(stats_path)]

    def forked() -> None:  # a shard: its own file, STATS_JSON.<pid>, merged by the bench
        state[0] = Stats(f"{stats_path}.{os.getpid()}")

    os.register_at_fork(after_in_child=forked)
    original = handlers._reconcile

    def timed(namespace: str | None, name: str | None, *rest: Any, **kw: Any) -> Any:
        try:
            return original(namespace, name, *rest, **kw)
        finally:
            now = time.monotonic()
            key = f"{namespace}/{name}"
            stats = state[0]
            with stats.guard:
                row = stats.runs.get(key)
                if row is None:
                    stats.runs[key] = [now, now, 0.0, 1]
                else:
                    row[2] = max(row[2], now - row[1])
                    row[1] = now
                    row[3] += 1

    handlers._reconcile = timed  # type: ignore[assignment]
    full_reconcile = getattr(handlers, "reconcile", None)  # the full one (not a memo hit); in every tree since the memo

    if full_reconcile is not None:

        def counted(kube: Any, namespace: str, name: str, *rest: Any, **kw: Any) -> Any:
            stats = state[0]
            with stats.guard:
                stats.full[f"{namespace}/{name}"] = stats.full.get(f"{namespace}/{name}", 0) + 1
            return full_reconcile(kube, namespace, name, *rest, **kw)

        handlers.reconcile = counted

    cli.main(["operator", *args])


if __name__ == "__main__":
    main()
