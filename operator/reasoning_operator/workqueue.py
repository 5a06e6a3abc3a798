"""A work queue of run keys, as controller-runtime has: a key is queued at most once (a burst of events on
one run is one reconcile), never handed to two workers at once (per-run serialisation; a key added while it
is being processed is processed again after), events before resync passes (a resync of a thousand runs
never delays a new run), delayed re-adds for retries, and coalesced adds: the events of a run's children that
come within a moment of each other (a pod created, scheduled, started; its Job counting it) are one reconcile.
Holds keys only, never state."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
NEW, EVENT, RESYNC = 0, 1, 2


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: tuple[deque[K], ...] = (deque(), deque(), deque())
        self._queued: dict[K, int] = {}  # key -> the priority it waits at
        self._processing: set[K] = set()
        self._dirty: dict[K, int] = {}  # added while processing: queue again when done
        self._later: list[tuple[float, int, K]] = []
        self._coalescing: set[K] = set()  # keys with a coalesced add in _later
        self._seq = itertools.count()
        self._closed = False

    def add(self, key: K, priority: int = EVENT) -> None:
        with self._cond:
            if key in self._processing:
                self._dirty[key] = min(priority, self._dirty.get(key, priority))
                return
            current = self._queued.get(key)
            if current is not None and current <= priority:
                return
            self._queued[key] = priority  # a promoted key's old entry is skipped when popped
            self._queues[priority].append(key)
            self._cond.notify()

    def waiting_at(self, key: K) -> int | None:
        """The priority a key waits at, None when it is not waiting."""
        with self._cond:
            return self._queued.get(key)

    def add_after(self, key: K, delay: float) -> None:
        with self._cond:
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._seq), key))
            self._cond.notify()

    def add_coalesced(self, key: K, delay: float) -> None:
        """Queue the key in `delay` seconds (at EVENT priority), unless it waits already: the adds until
        then are that one."""
        with self._cond:
            if key in self._coalescing or self._queued.get(key, RESYNC + 1) <= EVENT:
                return
            self._coalescing.add(key)
            heapq.heappush(self._later, (time.monotonic() + delay, next(self._seq), key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> K | None:
        """The next key (mark it done() after), or None on close or timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while self._later and self._later[0][0] <= now:
                    _, _, key = heapq.heappop(self._later)
                    self._coalescing.discard(key)
                    self._add_locked(key)
                for priority, queue in enumerate(self._queues):
                    while queue:
                        key = queue.popleft()
                        if self._queued.get(key) == priority:
                            del self._queued[key]
                            self._processing.add(key)
                            return key
                waits = [t - now for t in (deadline,) if t is not None]
                if self._later:
                    waits.append(self._later[0][0] - now)
                if deadline is not None and now >= deadline:
                    return None
                self._cond.wait(max(0.0, min(waits)) if waits else None)
            return None

    def _add_locked(self, key: K) -> None:
        if key in self._processing:
            self._dirty[key] = min(EVENT, self._dirty.get(key, EVENT))
        elif self._queued.get(key, RESYNC + 1) > EVENT:
            self._queued[key] = EVENT
            self._queues[EVENT].append(key)

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            priority = self._dirty.pop(key, None)
        if priority is not None:
            self.add(key, priority)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        """Keys queued (a coalesced add counts once its delay is over)."""
        with self._cond:
            return len(self._queued)
