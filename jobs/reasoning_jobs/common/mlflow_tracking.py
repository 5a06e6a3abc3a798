"""MLflow logging for the jobs that have metrics (training, evaluation), only where `spec.tracking.mlflow` is
set: the `mlflow` client is imported then and only then. Credentials come from the environment the pod builder
sets from the Secret (MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD), which the client reads itself: nothing
here ever reads, logs or returns them. A tracking server that fails is logged and then left alone: it never
fails the stage whose metrics it was to receive."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from reasoning_operator.api import MlflowSpec

log = logging.getLogger(__name__)

#: Beside a training's output: the MLflow run id, so a restarted pod (preemption) logs into the same run.
RUN_ID_FILE = "mlflow_run_id"


def run_name(output_dir: str | Path) -> str:
    """The ReasoningRun's name (the pods' REASONING_RUN), else the run directory's name (the local runner)."""
    return os.environ.get("REASONING_RUN") or Path(output_dir).resolve().parent.name


class MlflowRun:
    """One MLflow run, logged to through `MlflowClient` (no global active run, no autologging)."""

    def __init__(self, spec: MlflowSpec, name: str, run_id: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.spec = spec
        self.client = MlflowClient(tracking_uri=spec.url)
        self.broken = False
        if run_id is None:
            experiment = self.client.get_experiment_by_name(spec.experiment)
            experiment_id = (
                experiment.experiment_id if experiment is not None else self.client.create_experiment(spec.experiment)
            )
            run = self.client.create_run(experiment_id, run_name=name, tags={"reasoning.run": name})
        else:
            run = self.client.get_run(run_id)
        self.run_id: str = run.info.run_id
        self.experiment_id: str = run.info.experiment_id

    @property
    def url(self) -> str:
        return f"{self.spec.url.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def _call(self, what: str, action: Any, *args: Any, **kwargs: Any) -> None:
        if self.broken:
            return
        try:
            action(*args, **kwargs)
        except Exception as error:  # the server's failure is not the stage's
            self.broken = True
            log.warning("MLflow %s failed, no more metrics go to %s: %s", what, self.spec.url, error)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), stamp, step) for key, value in metrics.items()]
        self._call("log_batch", self.client.log_batch, self.run_id, metrics=batch)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        batch = [Param(key, str(value)[:6000]) for key, value in params.items()]
        self._call("log_batch", self.client.log_batch, self.run_id, params=batch)

    def finish(self, status: str = "FINISHED") -> None:
        self._call("set_terminated", self.client.set_terminated, self.run_id, status)


def open_run(spec: MlflowSpec | None, name: str, run_id: str | None = None) -> MlflowRun | None:
    """The run to log to; None when MLflow is not configured or the server cannot be reached (logged)."""
    if spec is None:
        return None
    try:
        return MlflowRun(spec, name, run_id)
    except Exception as error:
        log.warning("MLflow server %s unusable, metrics stay on the volume only: %s", spec.url, error)
        return None
