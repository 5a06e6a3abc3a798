"""The run store a reconcile starts from: newest body wins, our writes never resurrect a deleted run, and a
store hit costs no request."""

from __future__ import annotations

from typing import Any

import pytest

from reasoning_operator.cache import RunStore
from reasoning_operator.kube import Kube


def body(version: int, uid: str = "u1", phase: str = "") -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "r", "uid": uid, "resourceVersion": str(version)},
        "status": {"phase": phase} if phase else {},
    }


def test_a_late_watch_event_never_hides_our_newer_status_write() -> None:
    store = RunStore()
    store.offer(body(10))
    store.update(body(12, phase="Curating"))  # our patch's answer
    store.offer(body(11))  # the watch catching up with an older version
    assert store.get("ns", "r") == body(12, phase="Curating")
    store.offer(body(13, phase="Training"))
    assert store.get("ns", "r") == body(13, phase="Training")


def test_our_write_does_not_bring_back_a_run_the_watch_saw_deleted() -> None:
    store = RunStore()
    store.offer(body(10))
    store.forget("ns", "r")
    store.update(body(12))
    assert store.get("ns", "r") is None


def test_a_namesake_replaces_the_deleted_run_whatever_its_version() -> None:
    store = RunStore()
    store.offer(body(50, uid="old"))
    store.offer(body(40, uid="new"))  # a version is compared only within one object
    assert store.get("ns", "r") == body(40, uid="new")


class _NoApi:
    """A client that fails the test if the reconcile's read reaches the apiserver."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("GET sent although the store held the run")


def test_get_run_reads_the_store_and_asks_the_apiserver_only_without_a_body() -> None:
    store = RunStore()
    kube = Kube.__new__(Kube)  # only the read path: no client pool needed
    kube.runs, kube.rest = store, _NoApi()  # type: ignore[assignment]
    store.offer(body(7))
    assert kube.get_run("ns", "r") == body(7)
    with pytest.raises(AssertionError, match="GET sent"):
        kube.get_run("ns", "other")
