"""SIGTERM ends training at the next step boundary with a checkpoint of that step.

The kubelet sends SIGTERM when a pod is deleted, its Job suspended, preempted by Kueue or its node drained. A
process that dies mid-step (or, as PID 1 without a handler, ignores the signal until SIGKILL) loses everything since
the last periodic checkpoint; one that saves at the step it reached loses nothing but the step in flight.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

#: The exit status of a process ended by SIGTERM (128 + 15): what a pod shows, and what kubectl users expect.
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class StopRequests:
    """Records SIGTERM while training runs (the previous handler is restored on exit)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: object = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]
            self._previous = None

    @property
    def requested(self) -> bool:
        return self.received is not None
