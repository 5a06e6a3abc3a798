"""Runs spread over three operator processes (`--shards 3`) on the real control plane: every run is reconciled by
exactly one shard (one curation Job each, no duplicate), the supervisor's /metrics sums the shards' (every run's
series, from whichever shard holds it), its health is every shard's, and no shard outlives the supervisor nor
runs on when one of them dies: the whole operator exits, as a pod would restart. Restarted with another shard
count, the runs carry on where they were, with no duplicate child."""

from __future__ import annotations

import copy
import json
import os
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from tests.e2e.conftest import Operator, Runs
from tests.support.controlplane import ControlPlane
from tests.support.fake_kubelet import finish_job_pods, wait_until

from reasoning_operator.shards import shard_of

pytestmark = pytest.mark.controlplane
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "reasoningrun.yaml").read_text())
SHARDS = 3
RUNS = 9
CURATION = {"samplesRead": 10, "samplesWritten": 8, "dropped": {}, "reasoningOn": 4, "reasoningOff": 4}


def _shard_pids(supervisor: int) -> list[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def sharded(control_plane: ControlPlane, crd: object, tmp_path: Path) -> Iterator[Operator]:
    op = Operator(control_plane.kubeconfig, tmp_path / "operator.log", shards=SHARDS)
    op.start()
    try:
        yield op
    finally:
        op.stop()


def _spanning(namespace: str, per_shard: int) -> list[str]:
    """Run names that fall `per_shard` to each shard (the namespace is random, so is a fixed name's shard)."""
    names: list[str] = []
    for i in range(10_000):
        name = f"shard-{i}"
        if sum(shard_of(namespace, n, SHARDS) == shard_of(namespace, name, SHARDS) for n in names) < per_shard:
            names.append(name)
        if len(names) == per_shard * SHARDS:
            return names
    raise AssertionError("no names spanning every shard")


def _create_curating(runs: Runs, names: list[str]) -> None:
    for name in names:
        manifest = copy.deepcopy(EXAMPLE)
        manifest["metadata"]["name"] = name
        runs.create(manifest)
    for name in names:
        runs.wait_phase(name, "Curating")


def _metrics(op: Operator) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()


def test_each_run_is_reconciled_by_one_shard_and_the_supervisor_speaks_for_all(
    runs_no_operator: Runs, sharded: Operator
) -> None:
    runs = runs_no_operator
    names = _spanning(runs.namespace, per_shard=RUNS // SHARDS)
    _create_curating(runs, names)
    wait_until(lambda: sharded.probe("/readyz") == 200, timeout=30, what="every shard ready")
    assert sharded.probe("/healthz") == 200
    time.sleep(3)  # a few resync passes (2 s): a second shard reconciling a run would make a second Job
    jobs = Counter(j.metadata.labels["reasoning-operator.dev/run"] for j in runs.jobs())
    assert jobs == dict.fromkeys(names, 1), jobs

    pids = _shard_pids(sharded.proc.pid if sharded.proc else 0)
    assert len(pids) == SHARDS
    text = _metrics(sharded)
    for name in names:
        assert f'reasoning_runs{{namespace="{runs.namespace}",phase="Curating",run="{name}"}} 1.0' in text
    assert text.count("# TYPE reasoning_reconciles_total counter") <= 1 and "reasoning_reconciles_total" in text
    log = sharded.log_path.read_text()
    assert all(f"[shard {i}]" in log for i in range(SHARDS)), sharded.log_tail()

    # A shard that dies takes the operator down with it (exit != 0), and every other shard stops too.
    os.kill(pids[1], signal.SIGKILL)
    assert sharded.proc is not None
    assert sharded.proc.wait(timeout=60) != 0
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=30, what="every shard stopped")


def test_no_shard_outlives_a_killed_supervisor_and_a_reshard_restart_duplicates_nothing(
    runs_no_operator: Runs, sharded: Operator, api: k8s.ApiClient
) -> None:
    runs = runs_no_operator
    names = [f"reshard-{i}" for i in range(4)]
    _create_curating(runs, names)
    assert sharded.proc is not None
    pids = _shard_pids(sharded.proc.pid)
    assert len(pids) == SHARDS
    sharded.kill()  # SIGKILL: nothing can be forwarded, the kernel tells the shards (PR_SET_PDEATHSIG)
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=30, what="the shards gone with their supervisor")
    for name in names:  # while it is down, curation finishes
        finish_job_pods(runs.core, runs.namespace, f"{name}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    sharded.shards = 2  # the runs fall to other shards now
    sharded.start()
    for name in names:
        runs.wait_phase(name, "Training", timeout=90)
    time.sleep(3)
    jobs = Counter(j.metadata.name for j in runs.jobs())
    assert jobs == {f"{n}-{stage}": 1 for n in names for stage in ("curation", "training")}, jobs
