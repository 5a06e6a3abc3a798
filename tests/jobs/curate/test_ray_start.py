"""Curation's private Ray is started again when Ray's fixed 30 s raylet registration times out on an
overloaded node, and the half-started session's processes are killed first. Ray's own start is replaced here
(only at ray.init: the timeout cannot be provoked on purpose); the process cleanup is real."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from reasoning_jobs.curate import pipeline

TIMEOUT = "The current node timed out during startup. This could happen because some of the raylet failed"


def test_a_start_that_times_out_is_tried_again_after_cleanup(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    calls: list[dict[str, Any]] = []
    killed: list[int] = []

    def init(**kwargs: Any) -> None:
        calls.append(kwargs)
        if len(calls) < pipeline.RAY_START_ATTEMPTS:
            raise Exception(TIMEOUT)

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(pipeline, "_kill_descendants", lambda: killed.append(len(calls)))
    pipeline._init_local_ray(2)
    assert len(calls) == pipeline.RAY_START_ATTEMPTS and all(c["num_cpus"] == 2 for c in calls)
    assert killed == list(range(1, pipeline.RAY_START_ATTEMPTS))  # after every failed try, before the next


def test_the_last_timeout_and_other_errors_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(pipeline, "_kill_descendants", lambda: None)
    calls: list[int] = []

    def always_times_out(**_: Any) -> None:
        calls.append(1)
        raise Exception(TIMEOUT)

    monkeypatch.setattr(ray, "init", always_times_out)
    with pytest.raises(Exception, match="timed out during startup"):
        pipeline._init_local_ray(1)
    assert len(calls) == pipeline.RAY_START_ATTEMPTS

    def broken(**_: Any) -> None:
        calls.append(1)
        raise ValueError("num_cpus must be positive")

    calls.clear()
    monkeypatch.setattr(ray, "init", broken)
    with pytest.raises(ValueError, match="num_cpus"):
        pipeline._init_local_ray(1)
    assert len(calls) == 1  # not a startup timeout: no retry


#: A process with a child and a grandchild that kills its descendants and prints their pids (run apart: in the
#: test process it would kill the servers other tests' fixtures started).
KILLER = """
import json, subprocess, sys, time
from reasoning_jobs.curate.pipeline import _kill_descendants
sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
child = subprocess.Popen([sys.executable, "-c", f"import subprocess; subprocess.Popen({sleeper!r}).wait()"])
time.sleep(1.5)
pids = [child.pid] + [int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(child.pid)],
                                                      capture_output=True, text=True).stdout.split()]
_kill_descendants()
child.wait(timeout=10)
print(json.dumps(pids))
"""


def test_kill_descendants_ends_children_and_grandchildren() -> None:
    out = subprocess.run([sys.executable, "-c", KILLER], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]  # the killer itself lives on
    pids = json.loads(out.stdout)
    assert len(pids) == 2, pids  # the child and its own child
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_registration_lookup_waits_while_ray_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the start, Ray's lookup of its own node keeps asking until the raylet has registered (Ray's
    loop around it gives up after 30 s); outside it, Ray's function is back."""
    from ray._private import services

    answers = iter([RuntimeError("not yet")] * 3 + [{"node": "info"}])

    def get_node(gcs_address: str, node_id: str) -> dict[str, str]:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(services, "get_node", get_node)
    with pipeline._patient_registration():
        assert services.get_node("gcs:1", "n") == {"node": "info"}  # after three refusals
    assert services.get_node is get_node

    def never(gcs_address: str, node_id: str) -> None:
        raise RuntimeError("never registers")

    monkeypatch.setattr(services, "get_node", never)
    monkeypatch.setattr(pipeline, "RAYLET_REGISTRATION_SECONDS", 1.0)
    started = time.monotonic()
    with pipeline._patient_registration(), pytest.raises(RuntimeError, match="never registers"):
        services.get_node("gcs:1", "n")
    assert 1.0 <= time.monotonic() - started < 10


def test_a_crashed_raylet_is_seen(tmp_path: Path) -> None:
    """A raylet that exited (a zombie until Ray reaps it) ends the wait for its registration at once."""
    import shutil

    raylet = tmp_path / "raylet"
    shutil.copy("/bin/true", raylet)
    assert not pipeline._raylet_died()
    process = subprocess.Popen([str(raylet)])
    deadline = time.monotonic() + 10
    while not pipeline._raylet_died() and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert pipeline._raylet_died()
    finally:
        process.wait()
    assert not pipeline._raylet_died()
