"""spec.tracking in the child manifests: the MLflow URL reaches the training and evaluation configs, the
credentials only as secretKeyRefs on those two pods, and a run without it renders exactly as before."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from reasoning_operator.api import (
    MLFLOW_CREDENTIAL_VARIABLES,
    EvaluationStageConfig,
    ReasoningRunSpec,
    Stage,
    TrainingStageConfig,
)
from reasoning_operator.core import builders
from reasoning_operator.core.run import Run

TRACKING = {"mlflow": {"url": "http://mlflow.mlops:5000", "experiment": "gsm", "credentialsSecret": "mlflow-creds"}}


def _run(make_run: Any, **spec: Any) -> Run:
    return Run.from_object(make_run(spec=spec))


def _env(job: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_credentials_are_secret_key_refs_on_the_metric_stages_only(make_run: Any) -> None:
    run = _run(make_run, tracking=TRACKING)
    for job in (builders.build_training_job(run), builders.build_evaluation_job(run)):
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _env(job) if e["name"].startswith("MLFLOW_")}
        assert refs == {
            name: {"name": "mlflow-creds", "key": name, "optional": True} for name in MLFLOW_CREDENTIAL_VARIABLES
        }
        assert all("value" not in e for e in _env(job) if e["name"].startswith("MLFLOW_"))
    curation = builders.build_curation_job(run)
    assert not [e for e in _env(curation) if e["name"].startswith("MLFLOW_")]


def test_configs_carry_the_url_and_the_secret_name_only(make_run: Any) -> None:
    run = _run(make_run, tracking=TRACKING)
    data = builders.build_config_map(run, "http://demo-serving:8000")["data"]
    training = TrainingStageConfig.model_validate(yaml.safe_load(data[f"{Stage.TRAINING.value}.yaml"]))
    evaluation = EvaluationStageConfig.model_validate(yaml.safe_load(data[f"{Stage.EVALUATION.value}.yaml"]))
    for config in (training, evaluation):
        assert config.tracking is not None and config.tracking.mlflow is not None
        assert config.tracking.mlflow.url == "http://mlflow.mlops:5000" and config.tracking.mlflow.experiment == "gsm"


def test_without_tracking_nothing_changes(make_run: Any) -> None:
    run = _run(make_run)
    assert not [e for e in _env(builders.build_training_job(run)) if e["name"].startswith("MLFLOW_")]
    data = builders.build_config_map(run, "http://demo-serving:8000")["data"]
    assert all("tracking" not in text for text in data.values())


def test_tracking_is_not_part_of_the_training_key(make_run: Any) -> None:
    """Pointing a run at a tracking server must not invalidate its curated data or trained model."""
    from reasoning_jobs.common.artifacts import training_key

    plain = builders.build_config_map(_run(make_run), "http://s:8000")["data"]
    tracked = builders.build_config_map(_run(make_run, tracking=TRACKING), "http://s:8000")["data"]
    name = f"{Stage.TRAINING.value}.yaml"
    keys = {
        training_key(TrainingStageConfig.model_validate(yaml.safe_load(d[name])), "upstream") for d in (plain, tracked)
    }
    assert len(keys) == 1


@pytest.mark.parametrize("url", ["mlflow:5000", "ftp://x", "http://"])
def test_mlflow_url_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError):
        ReasoningRunSpec.model_validate({"tracking": {"mlflow": {"url": url}}})
