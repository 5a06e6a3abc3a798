"""Stale artifacts are never mistaken for this run's (issue 24, part 5): the operator side, on the real
control plane.

What this covers: a run deleted and created again under the same name with another training config, and two
runs sharing one `existingClaim`, each get stage configs with their own config and their own directory on
the same claim (the run directory carries the run's uid), so their training Jobs point at nothing of the
other's. kwok runs no container, so whether a training job would resume is tested on the job side with the
real `reasoning train` CLI on one shared directory
(tests/jobs/train/test_train_job.py::test_another_config_in_the_same_directory_starts_at_step_0_…):
even in the same directory, another config's checkpoints are moved aside and training starts at step 0."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.conftest import Runs
from tests.support.fake_kubelet import finish_job_pods, wait_until

from reasoning_operator.api import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.controlplane
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "reasoningrun.yaml").read_text())
CURATION = {"samplesRead": 10, "samplesWritten": 8, "dropped": {"language": 2}}
TRAINING = {"steps": 2000, "finalLoss": 0.6, "tokensSeen": 1234}
EVALUATION = {"accuracies": [{"benchmark": "gpqa_diamond", "mode": "on", "model": "trained", "accuracy": 0.4, "n": 9}]}


def _manifest(name: str, **spec: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(EXAMPLE)
    manifest["metadata"]["name"] = name
    for section, values in spec.items():
        manifest["spec"].setdefault(section, {}).update(values)
    return manifest


def _training_config(runs: Runs, name: str) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        try:
            config_map = runs.core.read_namespaced_config_map(f"{name}-config", runs.namespace)
        except Exception:
            return None
        parsed: dict[str, Any] = yaml.safe_load(config_map.data["training.yaml"])
        return parsed

    found: dict[str, Any] = wait_until(read, timeout=30, what=f"{name}'s ConfigMap")
    return found


def _claim_of(runs: Runs, job: str) -> str:
    spec = runs.batch.read_namespaced_job(job, runs.namespace).spec.template.spec
    claim: str = next(v.persistent_volume_claim.claim_name for v in spec.volumes if v.persistent_volume_claim)
    return claim


def test_a_run_recreated_with_another_training_config_gets_a_fresh_directory_on_the_same_claim(runs: Runs) -> None:
    name = "recreated"
    first = runs.create(_manifest(name))
    runs.wait_phase(name, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{name}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(name, "Training")
    finish_job_pods(runs.core, runs.namespace, f"{name}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    runs.wait_phase(name, "Evaluating", timeout=60)
    finish_job_pods(runs.core, runs.namespace, f"{name}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    runs.wait_phase(name, "Succeeded")
    old = _training_config(runs, name)
    assert _claim_of(runs, f"{name}-training") == f"{name}-data"

    runs.custom.delete_namespaced_custom_object(GROUP, VERSION, runs.namespace, PLURAL, name)
    wait_until(  # the garbage collector takes the Jobs and the ConfigMap; the Retain claim stays
        lambda: (
            not runs.jobs()
            and not runs.core.list_namespaced_config_map(
                runs.namespace, label_selector=f"reasoning-operator.dev/run={name}"
            ).items
        ),
        timeout=60,
        what="children of the deleted run collected",
    )
    runs.core.read_namespaced_persistent_volume_claim(f"{name}-data", runs.namespace)

    second = runs.create(_manifest(name, training={"learningRate": 0.0002}))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    runs.wait_phase(name, "Curating")
    new = _training_config(runs, name)
    assert new["training"]["learningRate"] == 0.0002 and old["training"]["learningRate"] == 0.0001
    assert _claim_of(runs, f"{name}-curation") == f"{name}-data"  # the same, retained volume
    # Its own directory on it: nothing of the first run's is where this run's jobs read and write.
    assert new["outputDir"] != old["outputDir"] and new["dataPath"] != old["dataPath"]
    assert second["metadata"]["uid"][:8] in new["outputDir"]
    finish_job_pods(runs.core, runs.namespace, f"{name}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(name, "Training")
    assert _training_config(runs, name)["outputDir"] == new["outputDir"]


def test_runs_sharing_an_existing_claim_never_share_a_directory(runs: Runs) -> None:
    runs.core.create_namespaced_persistent_volume_claim(
        runs.namespace,
        {
            "metadata": {"name": "shared"},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}},
        },
    )
    for name, lr in (("first", 0.0001), ("second", 0.0003)):
        runs.create(_manifest(name, storage={"existingClaim": "shared"}, training={"learningRate": lr}))
    for name in ("first", "second"):
        runs.wait_phase(name, "Curating")
        assert _claim_of(runs, f"{name}-curation") == "shared"
    a, b = _training_config(runs, "first"), _training_config(runs, "second")
    assert a["outputDir"] != b["outputDir"] and a["dataPath"] != b["dataPath"]
    assert (a["training"]["learningRate"], b["training"]["learningRate"]) == (0.0001, 0.0003)
