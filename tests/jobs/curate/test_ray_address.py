"""Where the curation pipeline's ray.init connects: its own local cluster, or (spec.curation.cluster) the
KubeRay cluster its RayJob runs it on."""

from __future__ import annotations

import pytest

from reasoning_jobs.curate.pipeline import ray_address


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
