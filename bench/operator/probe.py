"""Run `reasoning operator` from a given source tree, timing every reconcile of every run.

Used by bench_operator.py for both the baseline (an older tree) and the current one: it wraps
`reasoning_operator.handlers._reconcile`, the one entry every event and every resync pass goes through in
both, and writes `{namespace/name: [first, last, max_gap, count]}` (monotonic seconds) to a JSON file every
second, with the count of full reconciles (not memo hits) of each run.
Usage: probe.py SRC_DIR STATS_JSON -- <operator arguments>."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any


def main() -> None:
    src, stats_path, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: probe.py SRC_DIR STATS_JSON -- ARGS"
    sys.path[:0] = [str(Path(src) / "operator"), str(Path(src) / "jobs")]
    from reasoning_operator import cli, handlers

    stats: dict[str, list[float]] = {}
    full: dict[str, int] = {}
    guard = threading.Lock()
    original = handlers._reconcile

    def timed(namespace: str | None, name: str | None, *rest: Any, **kw: Any) -> Any:
        try:
            return original(namespace, name, *rest, **kw)
        finally:
            now = time.monotonic()
            key = f"{namespace}/{name}"
            with guard:
                row = stats.get(key)
                if row is None:
                    stats[key] = [now, now, 0.0, 1]
                else:
                    row[2] = max(row[2], now - row[1])
                    row[1] = now
                    row[3] += 1

    handlers._reconcile = timed  # type: ignore[assignment]
    full_reconcile = getattr(handlers, "reconcile", None)  # the full one (not a memo hit); in every tree since the memo

    if full_reconcile is not None:

        def counted(kube: Any, namespace: str, name: str, *rest: Any, **kw: Any) -> Any:
            with guard:
                full[f"{namespace}/{name}"] = full.get(f"{namespace}/{name}", 0) + 1
            return full_reconcile(kube, namespace, name, *rest, **kw)

        handlers.reconcile = counted

    def dump() -> None:
        while True:
            time.sleep(1.0)
            with guard:
                text = json.dumps({"now": time.monotonic(), "runs": stats, "full": full})
            tmp = Path(stats_path + ".tmp")
            tmp.write_text(text)
            tmp.replace(stats_path)

    threading.Thread(target=dump, daemon=True).start()
    cli.main(["operator", *args])


if __name__ == "__main__":
    main()
