"""The operator's stage cache (spec.cache), pure: keys, output paths, and the reuse decision in decide()."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from tests.operator.conftest import run_object
from tests.operator.test_decide import CURATION, TRAINING, job, kinds, pod, step

from reasoning_operator.api import CacheSpec, Phase, Stage
from reasoning_operator.core import stage_cache
from reasoning_operator.core.builders import build_config_map, build_curation_job, build_training_job
from reasoning_operator.core.run import Run

CACHE = {"enabled": True, "claimName": "shared-cache"}


def cached(name: str = "demo", **sections: Any) -> dict[str, Any]:
    return run_object(name, spec={"cache": dict(CACHE), **sections})


def keys_of(obj: dict[str, Any]) -> tuple[str, str]:
    k = stage_cache.keys(Run.from_object(obj))
    assert k.curation and k.training
    return k.curation, k.training


def finished(obj: dict[str, Any]) -> dict[str, Any]:
    """Drive a cached run through curation and training with its own Jobs; the run object with its status."""
    name = obj["metadata"]["name"]
    _, obj = step(obj)
    c = [job(f"{name}-curation", "curation", "complete")]
    cp = [pod("c-1", "curation", "Succeeded", json.dumps(CURATION))]
    _, obj = step(obj, jobs=c, pods=cp)
    t = [job(f"{name}-training", "training", "complete")]
    _, obj = step(obj, jobs=c + t, pods=[*cp, pod("t-1", "training", "Succeeded", json.dumps(TRAINING))])
    assert obj["status"]["stages"]["training"]["phase"] == "Succeeded"
    return obj


def test_keys_ignore_resources_workers_clusters_images_gpus_retries_and_the_run_name() -> None:
    base = keys_of(cached("a"))
    other = cached(
        "b",
        curation={"resources": {"cpu": "2", "memory": "4Gi"}, "workers": 3},
        training={
            "resources": {"cpu": "1", "memory": "1Gi"},
            "acceptedGpuProducts": ["NVIDIA-H200"],
            "backoffLimit": 9,
        },
        images={"curation": "example.com/cur:1", "training": "example.com/train:1"},
        model={"hubTokenSecret": {"name": "hf"}},
        evaluation={"benchmarks": ["gpqa_diamond"]},
    )
    assert keys_of(other) == base
    # curated on a KubeRay cluster: the same output as in one pod (the real-node test), so the same key
    assert keys_of(cached("c", curation={"cluster": {"workers": 4}})) == base


@pytest.mark.parametrize(
    "section",
    [
        {"dataset": {"source": "hf://other/dataset"}},
        {"dataset": {"filenameFilters": ["chat"]}},
        {"curation": {"languageThreshold": 0.9}},
        {"curation": {"tokenizer": "other/tokenizer"}},
        {"model": {"name": "other/model"}},  # the tokenizer curation counts with defaults to it
    ],
)
def test_a_curation_input_changes_both_keys(section: dict[str, Any]) -> None:
    curation, training = keys_of(cached())
    changed = keys_of(cached(**section))
    assert changed[0] != curation
    assert changed[1] != training  # the curated data is training's input


def test_a_training_setting_changes_the_training_key_only() -> None:
    curation, training = keys_of(cached())
    changed = keys_of(cached(training={"learningRate": 0.001}))
    assert changed == (curation, changed[1]) and changed[1] != training


def test_a_dataset_on_the_runs_own_volume_is_keyed_with_that_volume() -> None:
    local = {"dataset": {"source": "/workspace/data"}}
    own_a, own_b = keys_of(cached("a", **local)), keys_of(cached("b", **local))
    assert own_a[0] != own_b[0]  # a-data and b-data hold different files under the same path
    shared = {"dataset": {"source": "/workspace/data"}, "storage": {"existingClaim": "datasets"}}
    assert keys_of(cached("a", **shared)) == keys_of(cached("b", **shared))


def test_claim_name_is_required_when_enabled() -> None:
    with pytest.raises(ValidationError, match="claimName is required"):
        CacheSpec.model_validate({"enabled": True})
    assert CacheSpec.model_validate({"enabled": False}).claim_name is None


def test_cached_outputs_live_on_the_cache_claim_by_key() -> None:
    run = Run.from_object(cached())
    curation, training = keys_of(cached())
    data = build_config_map(run, "http://demo-serving:8000")["data"]
    cur, train = yaml.safe_load(data["curation.yaml"]), yaml.safe_load(data["training.yaml"])
    assert cur["outputDir"] == f"/cache/curation/{curation}"
    assert train["dataPath"] == f"/cache/curation/{curation}/training.jsonl"
    assert train["outputDir"] == f"/cache/training/{training}"
    assert yaml.safe_load(data["serving.yaml"])["adapterPath"] == f"/cache/training/{training}/adapter"
    for built in (build_curation_job(run), build_training_job(run)):
        pod_spec = built["spec"]["template"]["spec"]
        assert {"name": "stage-cache", "persistentVolumeClaim": {"claimName": "shared-cache"}} in pod_spec["volumes"]
        assert {"name": "stage-cache", "mountPath": "/cache"} in pod_spec["containers"][0]["volumeMounts"]


def test_without_the_cache_nothing_moves() -> None:
    run = Run.from_object(run_object())
    data = build_config_map(run, "http://demo-serving:8000")["data"]
    assert yaml.safe_load(data["curation.yaml"])["outputDir"].startswith(run.run_dir)
    assert "stage-cache" not in json.dumps(build_training_job(run))
    plan, _ = step(run_object())
    assert plan.status.cache is None


def test_the_cache_claim_is_never_a_child_of_the_run() -> None:
    """The run's children are what the garbage collector deletes with it: the cache claim is none of them."""
    obj = finished(cached())
    plan, _ = step(obj)
    named = [o["metadata"]["name"] for o in plan.create + plan.apply] + [name for _, name in plan.delete]
    assert "shared-cache" not in named


def test_a_second_run_with_the_same_inputs_reuses_both_stages_without_jobs() -> None:
    a = finished(cached("a"))
    b = cached("b", curation={"resources": {"cpu": "1", "memory": "2Gi"}})
    plan, b = step(b, namespace_runs=[a])
    assert ("Job", "b-curation") not in kinds(plan.create) and ("Job", "b-training") not in kinds(plan.create)
    stages = b["status"]["stages"]
    assert stages["curation"]["reusedFrom"] == "a" and stages["training"]["reusedFrom"] == "a"
    assert stages["curation"]["phase"] == stages["training"]["phase"] == "Succeeded"
    assert "child" not in stages["curation"]
    assert b["status"]["curation"]["samplesWritten"] == CURATION["samplesWritten"]
    assert b["status"]["training"]["steps"] == TRAINING["steps"]
    assert b["status"]["cache"]["keys"] == a["status"]["cache"]["keys"]
    assert plan.status.phase == Phase.SERVING


def test_a_different_training_setting_reuses_curation_only() -> None:
    a = finished(cached("a"))
    c = cached("c", training={"learningRate": 0.001})
    plan, c = step(c, namespace_runs=[a])
    assert ("Job", "c-training") in kinds(plan.create) and ("Job", "c-curation") not in kinds(plan.create)
    assert c["status"]["stages"]["curation"]["reusedFrom"] == "a"
    assert "reusedFrom" not in c["status"]["stages"]["training"]


@pytest.mark.parametrize(
    "source",
    [
        lambda a: {**a, "status": {**a["status"], "cache": {**a["status"]["cache"], "claimName": "other-cache"}}},
        lambda a: {**a, "metadata": {**a["metadata"], "name": "demo"}},  # the run itself
        lambda a: {**a, "status": {k: v for k, v in a["status"].items() if k != "cache"}},  # not cached
    ],
    ids=["other-claim", "itself", "uncached"],
)
def test_no_reuse_from_another_claim_itself_or_an_uncached_run(source: Any) -> None:
    a = source(finished(cached("a")))
    plan, _ = step(cached("demo"), namespace_runs=[a])
    assert ("Job", "demo-curation") in kinds(plan.create)


def curating(name: str) -> dict[str, Any]:
    obj = cached(name)
    _, obj = step(obj)
    _, obj = step(obj, jobs=[job(f"{name}-curation", "curation")], pods=[pod("c-1", "curation", "Running")])
    return obj


def test_a_run_whose_job_makes_the_same_output_is_waited_for_not_raced() -> None:
    a = curating("a")
    plan, b = step(cached("b"), namespace_runs=[a])
    assert not [o for o in plan.create if o["kind"] == "Job"]
    assert b["status"]["stages"]["curation"]["phase"] == "Pending"
    assert "run a is making this curation output" in b["status"]["stages"]["curation"]["message"]
    assert "child" not in b["status"]["stages"]["curation"]
    assert stage_cache.sources([b]) == ()  # a waiting run is nobody's producer: two waiters never deadlock
    # a finishes: b takes its output.
    c = [job("a-curation", "curation", "complete")]
    _, a = step(a, jobs=c, pods=[pod("c-1", "curation", "Succeeded", json.dumps(CURATION))])
    _, b = step(b, namespace_runs=[a])
    assert b["status"]["stages"]["curation"]["reusedFrom"] == "a"


@pytest.mark.parametrize("fate", ["failed", "suspended", "deleted"])
def test_a_producer_that_failed_is_suspended_or_gone_is_not_waited_for(fate: str) -> None:
    a = curating("a")
    if fate == "failed":
        _, a = step(a, jobs=[job("a-curation", "curation", "failed")], pods=[pod("c-1", "curation", "Failed")])
    elif fate == "suspended":
        a = {**a, "spec": {**a["spec"], "suspend": True}}
    plan, _ = step(cached("b"), namespace_runs=[] if fate == "deleted" else [a])
    assert ("Job", "b-curation") in kinds(plan.create)


def test_a_finished_source_wins_over_a_producer() -> None:
    a, z = curating("a"), finished(cached("z"))
    _, b = step(cached("b"), namespace_runs=[a, z])
    assert b["status"]["stages"]["curation"]["reusedFrom"] == "z"


def test_a_started_job_is_never_replaced_by_reuse() -> None:
    a = finished(cached("a"))
    _plan, b = step(cached("b"), jobs=[job("b-curation", "curation")], namespace_runs=[a])
    assert b["status"]["stages"]["curation"]["phase"] == "Running"
    assert "reusedFrom" not in b["status"]["stages"]["curation"]


def test_reuse_survives_the_source_runs_deletion() -> None:
    a = finished(cached("a"))
    _, b = step(cached("b"), namespace_runs=[a])
    plan, b = step(b, namespace_runs=[])  # a is gone
    assert b["status"]["stages"]["curation"]["reusedFrom"] == "a"
    assert plan.status.stages.get(Stage.TRAINING).phase.value == "Succeeded"
    assert not [o for o in plan.create if o["kind"] == "Job"]
