"""Experiment tracking end to end on the CPU: the training job writes TensorBoard event files (read back with
TensorBoard's own reader) and logs the same scalars to a real `mlflow server`; the evaluation's scores go into
that same MLflow run, and its report links to both. A killed and resumed training keeps one MLflow run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.mlflow_server import mlflow_server

from reasoning_jobs.train.options import STOP_AFTER_STEP_ENV
from reasoning_operator.api import EvaluationSpec, EvaluationStageConfig, ModelSpec, TrainingSpec, TrainingStageConfig
from reasoning_operator.api.tracking import MlflowSpec, TrackingSpec

ROOT = Path(__file__).resolve().parents[3]
SCALARS = ("train/loss", "train/learning_rate", "train/tokens_per_second", "train/grad_norm")


@pytest.fixture(scope="module")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def train(
    tmp_path: Path, model: Path, data: Path, out: Path, tracking: TrackingSpec | None, stop_after: int | None = None
) -> subprocess.CompletedProcess[str]:
    config = TrainingStageConfig(
        model=ModelSpec(name=str(model)),
        training=TrainingSpec.model_validate(
            {
                "maxSteps": 6,
                "globalBatchSize": 8,
                "microBatchSize": 4,
                "maxSeqLength": 256,
                "checkpointInterval": 2,
                "learningRate": 2e-3,
                "gradientCheckpointing": False,
            }
        ),
        data_path=str(data),
        output_dir=str(out),
        tracking=tracking,
    )
    config_file = tmp_path / f"{out.name}-training.yaml"
    config_file.write_text(json.dumps(config.to_wire()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "jobs")])}
    env.pop(STOP_AFTER_STEP_ENV, None)
    env["REASONING_RUN"] = "tracked-run"
    if stop_after is not None:
        env[STOP_AFTER_STEP_ENV] = str(stop_after)
    command = [sys.executable, "-m", "reasoning_operator.cli", "train", "--config", str(config_file), "--no-progress"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def metrics(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_tensorboard_without_mlflow(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "plain"
    done = train(tmp_path, tiny_model, dataset, out, tracking=None)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tensorboardDir"] == str(out / "tensorboard")
    assert "mlflowRunUrl" not in summary and not (out / "mlflow_run_id").exists()
    scalars = tensorboard_scalars(out / "tensorboard")
    assert set(scalars) == set(SCALARS)
    rows = metrics(out)
    for tag in SCALARS:
        field = tag.split("/", 1)[1]
        assert [step for step, _ in scalars[tag]] == [r["step"] for r in rows]
        assert [value for _, value in scalars[tag]] == pytest.approx([r[field] for r in rows], rel=1e-6)


def test_training_and_evaluation_log_to_one_mlflow_run(
    tiny_model: Path, dataset: Path, tmp_path: Path, mlflow_url: str
) -> None:
    from mlflow.tracking import MlflowClient

    from reasoning_jobs.evaluate.report import write_html, write_markdown
    from reasoning_jobs.evaluate.runner import EvaluationRun
    from reasoning_jobs.evaluate.statistics import score_cell
    from reasoning_jobs.evaluate.tracking import track

    tracking = TrackingSpec(mlflow=MlflowSpec(url=mlflow_url, experiment="tracking-test"))
    run_dir = tmp_path / "tracked-run"
    out = run_dir / "train"
    killed = train(tmp_path, tiny_model, dataset, out, tracking, stop_after=3)
    assert killed.returncode == 3, killed.stderr
    first_id = (out / "mlflow_run_id").read_text().strip()
    again = train(tmp_path, tiny_model, dataset, out, tracking)
    assert again.returncode == 0, again.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mlflowRunId"] == first_id  # the resumed pod logged into the same run
    client = MlflowClient(mlflow_url)
    run = client.get_run(first_id)
    assert summary["mlflowRunUrl"] == f"{mlflow_url}/#/experiments/{run.info.experiment_id}/runs/{first_id}"
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked-run"
    assert client.get_experiment(run.info.experiment_id).name == "tracking-test"
    assert run.data.params["max_steps"] == "6" and run.data.params["model"] == str(tiny_model)
    rows = metrics(out)
    loss = sorted(client.get_metric_history(first_id, "train/loss"), key=lambda m: (m.step, m.timestamp))
    latest = {m.step: m.value for m in loss}  # steps 3 was logged twice: before the kill and after the resume
    assert sorted(latest) == [1, 2, 3, 4, 5, 6]
    assert [latest[r["step"]] for r in rows] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    for tag in SCALARS:
        assert client.get_metric_history(first_id, tag), tag
    # TensorBoard hid the pre-kill step 3 (purge_step on resume): one value per step.
    assert [step for step, _ in tensorboard_scalars(out / "tensorboard")["train/loss"]] == [1, 2, 3, 4, 5, 6]

    scores = [
        score_cell("mmlu", "trained", "on", [True, True, False, True], [True] * 4, 0, [10.0] * 4, [True] * 4),
        score_cell("mmlu", "base", "on", [True, False, False, False], [True, True, True, False], 0, [3.0] * 4,
                   [True, False, True, True]),
    ]  # fmt: skip
    stage = EvaluationStageConfig(
        evaluation=EvaluationSpec(benchmarks=["mmlu"]),
        server_url="http://127.0.0.1:1",
        output_dir=str(run_dir / "eval"),
        trained_dir=str(out),
        tracking=tracking,
    )
    links = track(stage, scores)
    assert links.tensorboard_dir == str(out / "tensorboard")
    assert links.training_run_url == links.mlflow_run_url == summary["mlflowRunUrl"]
    logged = client.get_run(first_id).data.metrics
    assert logged["eval/mmlu/trained/reasoning_on/accuracy"] == pytest.approx(0.75)
    assert logged["eval/mmlu/base/reasoning_on/accuracy"] == pytest.approx(0.25)
    assert logged["eval/mmlu/base/reasoning_on/compliance"] == pytest.approx(0.75)

    eval_dir = Path(stage.output_dir)
    eval_dir.mkdir(parents=True)
    evaluated = EvaluationRun(scores=scores, records=[], questions={})
    markdown = write_markdown(evaluated, stage, eval_dir / "accuracy.png", eval_dir / "report.md", links).read_text()
    assert f"TensorBoard (training): `{out / 'tensorboard'}`" in markdown
    assert f"[{summary['mlflowRunUrl']}]({summary['mlflowRunUrl']})" in markdown
    page = write_html(evaluated, stage, eval_dir / "accuracy.png", eval_dir / "report.html", links).read_text()
    assert f'<a href="{summary["mlflowRunUrl"]}">' in page


def test_an_unreachable_tracking_server_does_not_fail_training(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    from tests.support.mlflow_server import free_port

    tracking = TrackingSpec(mlflow=MlflowSpec(url=f"http://127.0.0.1:{free_port()}"))
    out = tmp_path / "unreachable"
    env_timeout = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    os.environ.update(env_timeout)
    try:
        done = train(tmp_path, tiny_model, dataset, out, tracking)
    finally:
        for key in env_timeout:
            os.environ.pop(key)
    assert done.returncode == 0, done.stderr
    assert "metrics stay on the volume only" in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and "mlflowRunUrl" not in summary
