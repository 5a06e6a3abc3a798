"""The local runner's status, with the stage processes stubbed out: the same transitions (stage phases,
conditions, times, the run's phase) the operator's status goes through, pinned field by field."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from reasoning_jobs.local import runner
from reasoning_jobs.local.manifest import Manifest
from reasoning_jobs.local.processes import StageFailedError
from reasoning_operator.api import ReasoningRunSpec, Stage

NOW = "2026-01-02T03:04:05Z"
RESULTS: dict[Stage, dict[str, Any]] = {
    Stage.CURATION: {"samplesRead": 10, "samplesWritten": 8},
    Stage.TRAINING: {"steps": 4, "finalLoss": 1.5},
    Stage.EVALUATION: {
        "accuracies": [{"benchmark": "gpqa_diamond", "mode": "on", "model": "trained", "accuracy": 0.5}]
    },
    Stage.EXPORT: {"destination": "/workspace/export", "files": 2},
}


#: What the stubbed processes were asked to do, in order: ("run", stage), ("start", "serving"), ("stop", "serving").
CALLS: list[tuple[str, str]] = []


class _Server:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stopped = False

    def start(self) -> None:
        CALLS.append(("start", "serving"))

    def stop(self) -> None:
        CALLS.append(("stop", "serving"))
        self.stopped = True


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    export: bool = False,
    fail: Stage | None = None,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    CALLS.clear()

    def run_stage(stage: Stage, *args: Any, **kwargs: Any) -> str:
        CALLS.append(("run", stage.value))
        if stage == fail:
            raise StageFailedError(stage.value, f"{stage.value} exited with code 1; see the log:\nboom")
        return json.dumps(RESULTS[stage])

    monkeypatch.setattr(runner, "run_stage", run_stage)
    monkeypatch.setattr(runner, "Server", _Server)
    monkeypatch.setattr(runner, "_now", lambda: NOW)
    monkeypatch.setattr(runner, "time", SimpleNamespace(monotonic=lambda: 100.0))
    monkeypatch.setattr(runner, "fingerprint", lambda source: "fp")
    spec: dict[str, Any] = {"dataset": {"source": "/workspace/data"}, "model": {"name": "/workspace/model"}}
    if export:
        spec["export"] = {"destination": "/workspace/export"}
    if training:
        spec["training"] = training
    manifest = Manifest(name="r", spec=ReasoningRunSpec.model_validate(spec))
    local = runner.LocalRun(manifest, tmp_path / "run", echo=False)
    local.run()
    saved = yaml.safe_load((tmp_path / "run" / "status.yaml").read_text())
    assert saved["status"] == local.status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dict(saved["status"])


def _conditions(status: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(c["type"], c["status"], c["reason"], c["message"]) for c in status["conditions"]]


def test_a_run_that_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = _run(tmp_path, monkeypatch)
    assert status["phase"] == "Succeeded" and status["progress"] == "done" and "currentStage" not in status
    assert _conditions(status) == [
        ("DataCurated", "True", "Completed", "finished in 0s"),
        ("ModelTrained", "True", "Completed", "finished in 0s"),
        ("ServingReady", "False", "ServingStopped", "evaluation finished; the local server was stopped"),
        ("Evaluated", "True", "Completed", "finished in 0s"),
        ("Succeeded", "True", "Succeeded", "all stages finished"),
    ]
    assert all(c["lastTransitionTime"] == NOW and c["observedGeneration"] == 1 for c in status["conditions"])
    for stage in ("curation", "training", "evaluation"):
        assert status["stages"][stage] == {
            "phase": "Succeeded",
            "child": f"r-{stage}",
            "startTime": NOW,
            "completionTime": NOW,
            "durationSeconds": 0.0,
            "message": "finished in 0s",
        }
    assert status["stages"]["serving"]["phase"] == "Succeeded"
    assert status["stages"]["serving"]["message"].startswith("ready on http://127.0.0.1:")
    assert "durationSeconds" not in status["stages"]["serving"] and "export" not in status["stages"]
    assert status["curation"]["samplesWritten"] == 8 and status["training"]["steps"] == 4
    assert status["headlineAccuracy"] == "gpqa_diamond/on: 0.500"


def test_a_run_with_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = _run(tmp_path, monkeypatch, export=True)
    assert status["phase"] == "Succeeded"
    assert ("Exported", "True", "Completed", "finished in 0s") in _conditions(status)
    assert status["stages"]["export"]["phase"] == "Succeeded" and status["export"]["files"] == 2
    # The server is up only while a stage that talks to it runs: stopped before the export loads the model.
    assert CALLS == [
        ("run", "curation"),
        ("run", "training"),
        ("start", "serving"),
        ("run", "evaluation"),
        ("stop", "serving"),
        ("run", "export"),
    ]


def test_a_second_run_reuses_every_stage_and_starts_no_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tmp_path, monkeypatch, export=True)
    status = _run(tmp_path, monkeypatch, export=True)
    assert CALLS == [] and status["phase"] == "Succeeded"
    reasons = {c["type"]: c["reason"] for c in status["conditions"]}
    assert reasons["ServingReady"] == "NotNeeded"
    assert all(reasons[kind] == "Cached" for kind in ("DataCurated", "ModelTrained", "Evaluated", "Exported"))
    assert status["stages"]["serving"]["message"] == "evaluation results are reused: no server"
    assert status["export"]["files"] == 2 and status["headlineAccuracy"] == "gpqa_diamond/on: 0.500"


def test_a_changed_stage_runs_again_with_everything_after_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each key holds the one before it: a changed training config re-runs training, serving and evaluation,
    and reuses curation."""
    _run(tmp_path, monkeypatch)
    _run(tmp_path, monkeypatch, training={"learningRate": 2e-4})
    assert CALLS == [("run", "training"), ("start", "serving"), ("run", "evaluation"), ("stop", "serving")]


def test_a_failed_stage_fails_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = _run(tmp_path, monkeypatch, fail=Stage.TRAINING)
    message = "training exited with code 1; see the log:\nboom"
    assert status["phase"] == "Failed" and status["progress"] == "failed" and "currentStage" not in status
    assert status["failureReason"] == message
    assert _conditions(status) == [
        ("DataCurated", "True", "Completed", "finished in 0s"),
        ("ModelTrained", "False", "Failed", "training exited with code 1; see the log:"),
        ("Succeeded", "False", "Failed", message),
        ("Failed", "True", "StageFailedError", message),
    ]
    assert status["stages"]["training"] == {
        "phase": "Failed",
        "child": "r-training",
        "startTime": NOW,
        "completionTime": NOW,
        "message": "training exited with code 1; see the log:",
    }
    assert status["stages"]["serving"] == {"phase": "Pending"}


def test_the_current_stage_is_the_running_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str, str]] = []
    original = runner.LocalRun._save_status

    def save(self: runner.LocalRun) -> None:
        seen.append((self.status.phase.value, str(self.status.current_stage), str(self.status.progress)))
        original(self)

    monkeypatch.setattr(runner.LocalRun, "_save_status", save)
    _run(tmp_path, monkeypatch)
    assert ("Curating", "curation", "curation") in seen and ("Training", "training", "training") in seen
    assert ("Serving", "serving", "serving") in seen and ("Evaluating", "evaluation", "evaluation") in seen
    assert seen[-1] == ("Succeeded", "None", "done")
