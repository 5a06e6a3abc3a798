"""Where the curation pipeline's ray.init connects (its own local cluster, or the KubeRay cluster its RayJob runs
it on: spec.curation.cluster), and which of that cluster's nodes Curator's executor uses."""

from __future__ import annotations

import pytest

from reasoning_jobs.curate.pipeline import executor, ray_address


def test_without_a_cluster_the_pipeline_starts_its_own_even_when_ray_address_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address(on_cluster=False) == "local"


def test_on_a_cluster_the_pipeline_joins_the_one_ray_address_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert ray_address(on_cluster=True) == "10.0.0.1:6379"
    monkeypatch.delenv("RAY_ADDRESS")
    assert ray_address(on_cluster=True) == "auto"


def test_on_a_cluster_curators_per_node_work_skips_the_cpu_less_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RayJob's head has num-cpus 0: Curator's setup_on_node pinned there could never be scheduled."""
    monkeypatch.delenv("CURATOR_IGNORE_RAY_HEAD_NODE", raising=False)
    assert executor(on_cluster=True).ignore_head_node is True
    assert executor(on_cluster=False).ignore_head_node is False  # a local cluster's only node is its head
