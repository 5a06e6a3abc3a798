"""The Argo CD health check (deploy/argocd/health-reasoningrun.lua), run by real Lua interpreters (lupa) the
way Argo CD runs it: the live object as the global `obj`, a table {status, message} back. Argo CD embeds
gopher-lua, a Lua 5.1, so every case runs on Lua 5.1 and, to catch version-specific code, on Lua 5.4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51
import lupa.lua54
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "argocd" / "health-reasoningrun.lua"
CM_PATCH = REPO / "deploy" / "argocd" / "argocd-cm-patch.yaml"
HEALTH_KEY = "resource.customizations.health.reasoning-operator.dev_ReasoningRun"


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any], script: str | None = None) -> dict[str, str]:
    results = []
    for lua in (lupa.lua51, lupa.lua54):
        runtime = lua.LuaRuntime(unpack_returned_tuples=True)
        runtime.globals().obj = _to_lua(runtime, obj)
        result = runtime.execute(script or SCRIPT.read_text())
        results.append({"status": result["status"], "message": result["message"]})
    assert results[0] == results[1], results
    return results[0]


def run(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "reasoning-operator.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "r", "namespace": "ml", "generation": generation},
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(ctype: str, status: str, reason: str, message: str = "") -> dict[str, str]:
    return {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": "t"}


CASES = [
    ("new", None, "Progressing", "Waiting for the operator to pick up the run"),
    ("pending", {"phase": "Pending", "observedGeneration": 1}, "Progressing", "Pending"),
    (
        "curating",
        {"phase": "Curating", "currentStage": "curation", "progress": "curation", "observedGeneration": 1},
        "Progressing",
        "Curating: curation",
    ),
    (
        "training",
        {
            "phase": "Training",
            "currentStage": "training",
            "progress": "step 840/2000 (42%)",
            "trainingProgress": {"step": 840, "maxSteps": 2000, "loss": 0.7},
            "observedGeneration": 1,
            "conditions": [cond("DataCurated", "True", "Completed")],
        },
        "Progressing",
        "Training: step 840/2000 (42%)",
    ),
    (
        "succeeded",
        {
            "phase": "Succeeded",
            "headlineAccuracy": "gpqa_diamond/on: 0.420",
            "observedGeneration": 1,
            "conditions": [cond("Succeeded", "True", "Succeeded")],
        },
        "Healthy",
        "Succeeded: gpqa_diamond/on: 0.420",
    ),
    (
        "failed",
        {
            "phase": "Failed",
            "failureReason": "Job r-curation failed: malformed JSON at SFT/chat/chat.jsonl:17",
            "observedGeneration": 1,
            "conditions": [cond("Failed", "True", "StageFailed", "x")],
        },
        "Degraded",
        "Job r-curation failed: malformed JSON at SFT/chat/chat.jsonl:17",
    ),
    (
        "invalid spec",
        {
            "phase": "Failed",
            "progress": "invalid spec",
            "failureReason": "spec.training.maxSteps: Input should be greater than or equal to 1",
            "observedGeneration": 1,
            "conditions": [cond("Failed", "True", "InvalidSpec", "spec.training.maxSteps: ...")],
        },
        "Degraded",
        "spec.training.maxSteps: Input should be greater than or equal to 1",
    ),
    (
        "failed without reason",
        {"phase": "Failed", "conditions": [cond("Failed", "True", "StageFailed", "evaluation failed")]},
        "Degraded",
        "evaluation failed",
    ),
    (
        "serving scaled to zero",
        {
            "phase": "Serving",
            "observedGeneration": 1,
            "conditions": [cond("ServingReady", "False", "ScaledToZero", "spec.serving.replicas is 0")],
        },
        "Suspended",
        "spec.serving.replicas is 0",
    ),
    (
        "waiting for a gpu",
        {
            "phase": "Training",
            "progress": "waiting for a node",
            "observedGeneration": 1,
            "conditions": [cond("ModelTrained", "False", "Unschedulable", "0/3 nodes")],
        },
        "Progressing",
        "Training: waiting for a node",
    ),
    ("unknown phase", {"phase": "Exploding"}, "Unknown", "Unrecognised phase Exploding"),
]


@pytest.mark.parametrize(("status", "expected", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_health(status: dict[str, Any] | None, expected: str, message: str) -> None:
    assert health(run(status)) == {"status": expected, "message": message}


def test_stale_status_of_an_older_generation_is_progressing() -> None:
    result = health(run({"phase": "Succeeded", "observedGeneration": 1}, generation=2))
    assert result == {"status": "Progressing", "message": "Waiting for the operator to observe generation 2"}


def test_argocd_cm_patch_carries_the_script_verbatim() -> None:
    cm = yaml.safe_load(CM_PATCH.read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"][HEALTH_KEY] == SCRIPT.read_text()
    assert health(run({"phase": "Succeeded"}), cm["data"][HEALTH_KEY])["status"] == "Healthy"
