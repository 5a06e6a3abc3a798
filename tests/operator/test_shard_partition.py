"""Runs spread over operator processes (shards.py): every run belongs to exactly one shard, the same one in every
process and after a restart; a shard keeps and announces only its own runs' children; the supervisor's metrics
are the shards' summed into one valid exposition."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.parser import text_string_to_metric_families

from reasoning_operator.cache import KIND_SPECS, Health, Informer
from reasoning_operator.core.run import MANAGED_BY, RUN_LABEL
from reasoning_operator.settings import OperatorSettings
from reasoning_operator.shards import AUTO_MAX, Shard, merge_metrics, shard_count, shard_of, usable_cpus

NAMES = [("team-a", f"run-{i}") for i in range(600)] + [("team-b", f"run-{i}") for i in range(600)]


@pytest.mark.parametrize("count", [2, 3, 8])
def test_every_run_has_exactly_one_shard_and_they_share_the_load(count: int) -> None:
    shards = [Shard(i, count) for i in range(count)]
    owners = [sum(s.owns(ns, name) for s in shards) for ns, name in NAMES]
    assert set(owners) == {1}
    load = Counter(shard_of(ns, name, count) for ns, name in NAMES)
    assert len(load) == count and max(load.values()) < 1.3 * len(NAMES) / count, load


def test_the_shard_of_a_run_is_the_same_in_another_process() -> None:
    """Python's own hash() is salted per process; two shards (and a restarted operator) must agree."""
    code = "from reasoning_operator.shards import shard_of; print([shard_of('ns', f'r{i}', 5) for i in range(50)])"
    other = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert other.strip() == str([shard_of("ns", f"r{i}", 5) for i in range(50)])


def test_one_shard_owns_every_run() -> None:
    assert all(Shard().owns(ns, name) for ns, name in NAMES)


def test_shard_count_zero_means_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    assert shard_count(3) == 3
    assert shard_count(0) == min(AUTO_MAX, usable_cpus()) >= 1
    monkeypatch.setenv("REASONING_SHARDS", "4")
    assert OperatorSettings().shards == 4
    monkeypatch.setenv("REASONING_SHARDS", "-1")
    with pytest.raises(ValueError, match="shards"):
        OperatorSettings()


def _child(run: str, version: str = "1") -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": MANAGED_BY, RUN_LABEL: run}
    return {"metadata": {"namespace": "ns", "name": f"{run}-curation", "labels": labels, "resourceVersion": version}}


def test_a_shard_keeps_and_announces_only_its_own_runs_children() -> None:
    shard = Shard(0, 2)
    mine = next(f"r{i}" for i in range(50) if shard.owns("ns", f"r{i}"))
    theirs = next(f"r{i}" for i in range(50) if not shard.owns("ns", f"r{i}"))
    told: list[tuple[str, str]] = []
    informer = Informer(
        client.ApiClient(), KIND_SPECS[0], None, lambda ns, run: told.append((ns, run)), Health(), shard.owns
    )
    for run in (mine, theirs):
        informer._apply("ADDED", _child(run))
    assert told == [("ns", mine)]
    assert informer.of_run("ns", mine) and not informer.of_run("ns", theirs)


def _exposition(runs: list[str], reconciles: int, seconds: list[float], depth: int) -> str:
    registry = CollectorRegistry()
    phase = Gauge("reasoning_runs", "Runs by phase.", ["namespace", "run", "phase"], registry=registry)
    counter = PromCounter("reasoning_reconciles", "Checks.", ["result"], registry=registry)
    histogram = Histogram("reasoning_reconcile_duration_seconds", "Time.", registry=registry)
    queue = Gauge("reasoning_queue_depth", "Waiting.", registry=registry)
    for run in runs:
        phase.labels("ns", run, "Curating").set(1)
    counter.labels("full").inc(reconciles)
    for s in seconds:
        histogram.observe(s)
    queue.set(depth)
    return generate_latest(registry).decode()


def test_the_supervisor_sums_the_shards_metrics_into_one_exposition() -> None:
    merged = merge_metrics([_exposition(["a", "b"], 5, [0.01, 2.0], 3), _exposition(["c"], 7, [0.02], 4)])
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    runs = {s.labels["run"]: s.value for s in families["reasoning_runs"].samples}
    assert runs == {"a": 1.0, "b": 1.0, "c": 1.0}
    total = next(s for s in families["reasoning_reconciles"].samples if s.name == "reasoning_reconciles_total")
    assert total.value == 12
    hist = {(s.name, s.labels.get("le")): s.value for s in families["reasoning_reconcile_duration_seconds"].samples}
    assert hist[("reasoning_reconcile_duration_seconds_count", None)] == 3
    assert hist[("reasoning_reconcile_duration_seconds_bucket", "+Inf")] == 3
    assert hist[("reasoning_reconcile_duration_seconds_bucket", "0.025")] == 2
    assert next(s.value for s in families["reasoning_queue_depth"].samples) == 7
    assert merged.count("# TYPE reasoning_runs gauge") == 1
