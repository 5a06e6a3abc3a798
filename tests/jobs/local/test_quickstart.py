"""`reasoning run examples/quickstart.yaml`, exactly as the README's first command runs it: all four stages
for real on this machine (NeMo Curator + fastText, training a tiny Llama from scratch, a real Triton server
from PyTriton, tritonclient evaluation), then a second run that reuses every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
#: The whole pipeline on CPU takes 5-12 minutes on a 2-core machine, evaluation the half of it; in the gate it
#: shares the 2 cores with two other xdist workers and the background builds and took 1,611 s (27 min) once, so
#: the module gets its own limit, and the run says where it stood when it is hit.
RUN_TIMEOUT = 3000
pytestmark = pytest.mark.timeout(RUN_TIMEOUT + 100)


def _tails(run_dir: Path, chars: int = 1500) -> str:
    """The end of each stage log: a timed-out or failed run shows which stage it was in and how far it got."""
    logs = sorted((run_dir / "logs").glob("*.log")) if (run_dir / "logs").is_dir() else []
    return "".join(f"\n--- {log.name} ---\n{log.read_text(errors='replace')[-chars:]}" for log in logs)


def _run(run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return _run_once(run_dir, *extra, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"reasoning run did not finish in {RUN_TIMEOUT} s{_tails(run_dir)}")


def _run_once(run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
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
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=REPO,
        env=env,
    )


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("quickstart")
    proc = _run(run_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:] + _tails(run_dir)
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


def test_force_starts_training_fresh_and_keeps_the_previous_run(quickstart: Path) -> None:
    """Last in this module: it leaves the quickstart failed. `--force` re-runs every stage from scratch: the
    training job must start at step 0, not resume the finished run's last periodic checkpoint (issue 24)."""
    train = next(quickstart.rglob("train/metrics.jsonl")).parent
    finished = [json.loads(line)["step"] for line in (train / "metrics.jsonl").read_text().splitlines()]
    assert finished[-1] == 600 and (train / "checkpoints").is_dir()
    # Stop the forced training after its first step (the training job's simulated preemption).
    proc = _run(quickstart, "--force", env={**os.environ, "REASONING_TRAIN_STOP_AFTER_STEP": "1"})
    assert proc.returncode != 0  # training was stopped on purpose
    status = _status(quickstart)
    assert status["stages"]["curation"]["phase"] == "Succeeded"  # type: ignore[index]
    assert "moved aside" in status["stages"]["training"]["message"]  # type: ignore[index]
    steps = [json.loads(line)["step"] for line in (train / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1], steps  # from step 0
    stale = [p for p in train.parent.iterdir() if p.name.startswith("train.stale-")]
    assert len(stale) == 1
    kept = [json.loads(line)["step"] for line in (stale[0] / "metrics.jsonl").read_text().splitlines()]
    assert kept == finished  # the previous run, untouched
