"""The reconcile queue: one entry per run, never one run on two workers, events before resync passes."""

from __future__ import annotations

import threading
import time

from reasoning_operator.workqueue import EVENT, NEW, RESYNC, WorkQueue


def test_a_burst_of_events_on_one_run_is_one_entry() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(50):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_run_being_reconciled_is_not_handed_out_again_until_done_then_it_is() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")  # an event while it is processed
    assert queue.get(0) is None  # not to a second worker
    queue.done("a")
    assert queue.get(0) == "a"  # processed again afterwards, with what that event changed


def test_events_go_before_a_resync_pass_and_promote_a_run_waiting_in_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("r1", "r2", "r3"):
        queue.add(key, RESYNC)
    queue.add("new")
    queue.add("r3")  # an event on a run already waiting for the resync
    order = [queue.get(0) for _ in range(4)]
    assert order == ["new", "r3", "r1", "r2"]
    assert queue.get(0) is None


def test_add_after_waits_then_hands_the_key_out() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("retry", 0.3)
    start = time.monotonic()
    assert queue.get(0.05) is None
    assert queue.get(2) == "retry"
    assert time.monotonic() - start >= 0.29


def test_workers_never_hold_the_same_key_at_once() -> None:
    queue: WorkQueue[int] = WorkQueue()
    holding: set[int] = set()
    overlaps: list[int] = []
    guard = threading.Lock()
    processed = 0

    def work() -> None:
        nonlocal processed
        while (key := queue.get(1)) is not None:
            with guard:
                if key in holding:
                    overlaps.append(key)
                holding.add(key)
            time.sleep(0.001)
            with guard:
                holding.discard(key)
                processed += 1
            queue.done(key)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for w in workers:
        w.start()
    for i in range(2000):
        queue.add(i % 5)
    for w in workers:
        w.join()
    assert overlaps == []
    assert processed >= 5


def test_a_new_run_goes_before_events_on_older_ones() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("old-1")
    queue.add("old-2")
    queue.add("fresh", NEW)
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["fresh", "old-1", "old-2"]


def test_a_resync_entry_can_be_promoted_and_says_where_it_waits() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("waiting", RESYNC)
    queue.add("busy")
    assert queue.waiting_at("waiting") == RESYNC and queue.waiting_at("absent") is None
    queue.add("waiting", EVENT)  # the next pass found it still waiting
    assert queue.waiting_at("waiting") == EVENT
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["busy", "waiting", None]


def test_coalesced_adds_within_the_delay_are_one_entry_at_event_priority() -> None:
    """A run's children's events within a moment are one reconcile: the first starts the delay, the others
    join it; a run already waiting at event priority takes them as they come."""
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add_coalesced("a", 0.2)
    queue.add("e")
    queue.add_coalesced("e", 0.2)  # already waiting for an event: nothing more
    assert len(queue) == 1  # "a" counts once its delay is over
    assert queue.get(0) == "e"
    assert queue.get(0) is None  # not "a" before the delay
    time.sleep(0.25)
    assert queue.get(0) == "a"
    assert queue.get(0) is None  # five coalesced adds: one entry
    queue.done("a")
    queue.add_coalesced("a", 0.05)  # a new delay once the last one has fired
    assert queue.get(1.0) == "a"


def test_a_coalesced_add_moves_a_run_waiting_in_a_resync_pass_up_to_event_priority() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("r1", "r2", "r3"):
        queue.add(key, RESYNC)
    queue.add_coalesced("r3", 0.05)
    time.sleep(0.1)
    assert [queue.get(0) for _ in range(4)] == ["r3", "r1", "r2", None]
