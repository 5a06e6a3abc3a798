"""`reasoning run examples/quickstart.yaml`, exactly as the README's first command runs it: all four stages
for real on this machine (NeMo Curator + fastText, training a tiny Llama from scratch, a real Triton server
from PyTriton, tritonclient evaluation), then a second run that reuses every stage."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]


def _run(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "reasoning_operator.cli",
            "run",
            str(REPO / "examples" / "quickstart.yaml"),
            "--run-dir",
            str(run_dir),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("quickstart")
    proc = _run(run_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return run_dir


def _status(run_dir: Path) -> dict[str, object]:
    status: dict[str, object] = yaml.safe_load((run_dir / "status.yaml").read_text())["status"]
    return status


def test_all_stages_succeed_with_results(quickstart: Path) -> None:
    status = _status(quickstart)
    assert status["phase"] == "Succeeded"
    stages = status["stages"]
    assert isinstance(stages, dict)
    assert all(stages[s]["phase"] == "Succeeded" for s in ("curation", "training", "serving", "evaluation"))
    conditions = {c["type"]: c["status"] for c in status["conditions"]}  # type: ignore[attr-defined]
    assert conditions["Succeeded"] == "True" and conditions["DataCurated"] == "True"
    curation = status["curation"]
    assert isinstance(curation, dict)
    assert curation["samplesRead"] == curation["samplesWritten"] + sum(curation["dropped"].values()) + curation.get(
        "malformedLines", 0
    )
    for rule in ("language", "missing_boxed_answer", "empty_think", "used_in_training"):
        assert curation["dropped"][rule] > 0, rule  # the embedded dataset exercises every rule


def test_training_learned(quickstart: Path) -> None:
    metrics = [json.loads(line) for line in next(quickstart.rglob("train/metrics.jsonl")).read_text().splitlines()]
    first, last = metrics[0]["loss"], metrics[-1]["loss"]
    assert last < first / 4, (first, last)
    assert (quickstart / "training-curve.png").is_file()


def test_trained_model_follows_the_reasoning_toggle(quickstart: Path) -> None:
    """The issue's target: >= 95% toggle compliance with the system prompt on and off (measured, greedy)."""
    accuracies = _status(quickstart)["evaluation"]["accuracies"]  # type: ignore[index]
    trained = [a for a in accuracies if a["model"] == "trained"]
    assert {a["mode"] for a in trained} == {"on", "off"}
    for row in trained:
        assert row["compliance"] >= 0.95, row
    report = (quickstart / "report.md").read_text()
    assert "toggle compliance" in report and "not a model-quality claim" in report


def test_rerun_reuses_every_stage(quickstart: Path) -> None:
    started = time.monotonic()
    proc = _run(quickstart)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert time.monotonic() - started < 60
    reasons = {c["type"]: c["reason"] for c in _status(quickstart)["conditions"]}  # type: ignore[attr-defined]
    assert reasons["DataCurated"] == reasons["ModelTrained"] == reasons["Evaluated"] == "Cached"
    assert reasons["ServingReady"] == "NotNeeded"
