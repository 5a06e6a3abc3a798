"""Block progress while the pipeline runs: the contract's progress line on stdout each time more blocks are
written, which the operator reads from the pod's log into ``status.curationProgress``.

A block counts once its writer has finished its keys (the category names go last), so a worker lost halfway
through a block, whose retry rewrites it, is not counted twice. Counting files on the output volume needs no
hook into Ray Data, and on a KubeRay cluster the driver sees what every worker wrote to the shared claim.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TextIO

from reasoning_operator.api import CurationProgress
from reasoning_operator.api.contract import progress_line

from .curriculum import CATEGORIES

#: Seconds between two counts: a block takes seconds to minutes, the operator looks every few seconds.
INTERVAL_SECONDS = 2.0
#: An unchanged count is printed again after this long, so that the last lines of the log (all the operator
#: reads) hold one even while Ray's own lines follow it.
REPEAT_SECONDS = 20.0


def blocks_written(keys_dir: Path) -> int:
    try:
        return sum(1 for block in keys_dir.iterdir() if (block / CATEGORIES).is_file())
    except FileNotFoundError:
        return 0


class BlockProgress:
    """Prints ``{"blocksDone":n,"blocksTotal":N}`` at the start, whenever n grows (or every ``repeat`` seconds),
    and at the end."""

    def __init__(
        self,
        keys_dir: Path,
        total: int,
        interval: float = INTERVAL_SECONDS,
        stream: TextIO | None = None,
        repeat: float = REPEAT_SECONDS,
    ) -> None:
        self.keys_dir = keys_dir
        self.total = total
        self.interval = interval
        self.repeat = repeat
        self.stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="block-progress", daemon=True)
        self._last = -1
        self._printed = 0.0

    def _report(self) -> None:
        done = min(blocks_written(self.keys_dir), self.total)
        if done > self._last or time.monotonic() - self._printed >= self.repeat:
            self._last = max(done, self._last)
            self._printed = time.monotonic()
            line = progress_line(CurationProgress(blocks_done=self._last, blocks_total=self.total))
            print(line, file=self.stream or sys.stdout, flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._report()

    def __enter__(self) -> BlockProgress:
        self._report()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        if kind is None:
            self._report()
