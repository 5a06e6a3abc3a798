"""The operator's stage cache (spec.cache) on the real control plane: a run whose curation and training
inputs match a finished run's creates no Job for them and says where their output came from; another
training setting reuses curation only; deleting the source run leaves the reusing run intact (kwok plays
the kubelet: tests/support/fake_kubelet.py finishes the stage pods with results)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from tests.e2e.conftest import Runs
from tests.support.fake_kubelet import finish_job_pods, wait_until

from reasoning_operator.api import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.controlplane
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "reasoningrun.yaml").read_text())
CURATION = {"samplesRead": 10, "samplesWritten": 8, "dropped": {"language": 2}}
TRAINING = {"steps": 2000, "finalLoss": 0.6, "tokensSeen": 1234}
EVALUATION = {"accuracies": [{"benchmark": "gpqa_diamond", "mode": "on", "model": "trained", "accuracy": 0.4, "n": 9}]}
CACHE_CLAIM = "stage-cache"


def _manifest(name: str, **spec: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(EXAMPLE)
    manifest["metadata"]["name"] = name
    manifest["spec"]["cache"] = {"enabled": True, "claimName": CACHE_CLAIM}
    # A hub dataset: the example's path on each run's own volume would (rightly) give each run its own key.
    manifest["spec"]["dataset"]["source"] = "hf://nvidia/Llama-Nemotron-Post-Training-Dataset"
    for section, values in spec.items():
        manifest["spec"].setdefault(section, {}).update(values)
    return manifest


def _job_names(runs: Runs) -> set[str]:
    return {j.metadata.name for j in runs.jobs()}


def _config(runs: Runs, name: str, stage: str) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load(
        runs.core.read_namespaced_config_map(f"{name}-config", runs.namespace).data[f"{stage}.yaml"]
    )
    return found


def test_runs_with_the_same_inputs_reuse_curation_and_training(runs: Runs) -> None:
    runs.core.create_namespaced_persistent_volume_claim(
        runs.namespace,
        {
            "metadata": {"name": CACHE_CLAIM},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}},
        },
    )
    runs.create(_manifest("a"))
    runs.wait_phase("a", "Curating")
    finish_job_pods(runs.core, runs.namespace, "a-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase("a", "Training")
    finish_job_pods(runs.core, runs.namespace, "a-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    runs.wait_phase("a", "Evaluating")
    finish_job_pods(runs.core, runs.namespace, "a-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    a = runs.wait_phase("a", "Succeeded")
    keys = a["status"]["cache"]["keys"]
    assert keys["curation"] and keys["training"] and a["status"]["cache"]["claimName"] == CACHE_CLAIM
    assert _config(runs, "a", "training")["outputDir"] == f"/cache/training/{keys['training']}"

    # b: the same effective inputs (only the curation pod's resources differ): neither Job is created.
    runs.create(_manifest("b", curation={"resources": {"cpu": "2", "memory": "8Gi"}}))
    b = runs.wait(
        "b",
        lambda o: (o.get("status") or {}).get("phase") in ("Serving", "Evaluating"),
        "b past training",
    )
    for stage in ("curation", "training"):
        assert b["status"]["stages"][stage]["phase"] == "Succeeded"
        assert b["status"]["stages"][stage]["reusedFrom"] == "a"
    assert b["status"]["cache"]["keys"] == keys
    assert b["status"]["curation"]["samplesWritten"] == CURATION["samplesWritten"]
    assert b["status"]["training"]["steps"] == TRAINING["steps"]
    assert _config(runs, "b", "serving")["adapterPath"] == f"/cache/training/{keys['training']}/adapter"

    # c: another learning rate: curation reused, training runs, reading a's curated data on the cache claim.
    runs.create(_manifest("c", training={"learningRate": 0.0003}))
    c = runs.wait_phase("c", "Training")
    assert c["status"]["stages"]["curation"]["reusedFrom"] == "a"
    assert c["status"]["cache"]["keys"]["curation"] == keys["curation"]
    assert c["status"]["cache"]["keys"]["training"] != keys["training"]
    assert "reusedFrom" not in c["status"]["stages"]["training"]
    assert _config(runs, "c", "training")["dataPath"] == f"/cache/curation/{keys['curation']}/training.jsonl"
    volumes = runs.batch.read_namespaced_job("c-training", runs.namespace).spec.template.spec.volumes
    assert CACHE_CLAIM in {v.persistent_volume_claim.claim_name for v in volumes if v.persistent_volume_claim}

    # d: c's inputs while c's training Job runs: d waits for that output instead of writing beside it.
    runs.create(_manifest("d", training={"learningRate": 0.0003}))
    d = runs.wait(
        "d",
        lambda o: (
            ((o.get("status") or {}).get("stages") or {})
            .get("training", {})
            .get("message", "")
            .startswith("run c is making this training output")
        ),
        "d waiting for c's training",
    )
    assert d["status"]["stages"]["curation"]["reusedFrom"] == "a"
    assert d["status"]["stages"]["training"]["phase"] == "Pending"
    finish_job_pods(runs.core, runs.namespace, "c-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    d = runs.wait(
        "d",
        lambda o: ((o.get("status") or {}).get("stages") or {}).get("training", {}).get("reusedFrom") == "c",
        "d reusing c's training",
        timeout=60,
    )
    assert d["status"]["training"]["steps"] == TRAINING["steps"]

    jobs = _job_names(runs)
    assert {"b-curation", "b-training", "c-curation", "d-curation", "d-training"}.isdisjoint(jobs)
    assert "c-training" in jobs

    # Deleting a: b still finishes, still says where its data came from, and the cache claim is untouched.
    runs.custom.delete_namespaced_custom_object(GROUP, VERSION, runs.namespace, PLURAL, "a")

    def a_gone() -> bool:
        try:
            runs.get("a")
        except ApiException as err:
            return err.status == 404
        return False

    wait_until(a_gone, timeout=60, what="run a deleted")
    runs.wait_phase("b", "Evaluating")
    finish_job_pods(runs.core, runs.namespace, "b-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    b = runs.wait_phase("b", "Succeeded")
    assert b["status"]["stages"]["training"]["reusedFrom"] == "a"
    claim = runs.core.read_namespaced_persistent_volume_claim(CACHE_CLAIM, runs.namespace)
    assert claim.metadata.deletion_timestamp is None and not claim.metadata.owner_references
    assert {"b-curation", "b-training"}.isdisjoint(_job_names(runs))
