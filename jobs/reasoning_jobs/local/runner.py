"""`reasoning run`: the stages of a ReasoningRun on this machine, in the registry's order, with the same job code
and stage configs the operator uses, and a status that reads like the custom resource's."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.console import Console

from reasoning_jobs.common.artifacts import move_aside
from reasoning_operator.api import (
    ApiModel,
    Phase,
    ReasoningRunStatus,
    ServingStageConfig,
    Stage,
    StageConfigs,
    StagePhase,
    seconds_between,
    stage_configs,
    timestamp,
    transitions,
)
from reasoning_operator.api.contract import PROGRAM, config_file_name, job_args
from reasoning_operator.api.stage_defs import StageDef, StageKind, pipeline

from .assets import prepare
from .cache import StageCache, StageRecord, fingerprint, stage_key
from .manifest import Manifest
from .processes import Server, StageFailedError, run_stage
from .workspace import localize_spec


def _now() -> str:
    return timestamp(datetime.now(UTC))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LocalRun:
    manifest: Manifest
    root: Path
    force: bool = False
    echo: bool = True

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.workspace = self.root / "workspace"
        self.spec = localize_spec(self.manifest.spec, self.workspace)
        self.run_dir = self.workspace / "runs" / self.manifest.name
        self.cache = StageCache(self.root / "stages")
        self.status = ReasoningRunStatus()
        self.console = Console(highlight=False)

    # -- status, written after every change so `cat status.yaml` reads like `kubectl get rr -o yaml` ----
    def _save_status(self) -> None:
        body = {
            "metadata": {"name": self.manifest.name},
            "status": self.status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        (self.root / "status.yaml").write_text(yaml.safe_dump(body, sort_keys=False), encoding="utf-8")

    def _mark(self, stage: Stage, phase: StagePhase, reason: str, message: str) -> None:
        now = _now()
        child = f"{self.manifest.name}-{stage.value}"
        transitions.mark_stage(self.status, stage, phase, reason, message, now, 1, child)
        if phase == StagePhase.RUNNING:
            transitions.enter_stage(self.status, stage, stage.value)
        self._save_status()
        colour = {StagePhase.SUCCEEDED: "green", StagePhase.FAILED: "red"}.get(phase, "cyan")
        self.console.print(f"[bold {colour}]● {stage.value}: {phase.value}[/] [dim]{message}[/]")

    def _finish(self, phase: Phase, message: str) -> None:
        if phase == Phase.FAILED:
            self.status.failure_reason = message
        transitions.end_run(self.status, phase)
        failed = "StageFailedError" if phase == Phase.FAILED else None
        transitions.run_conditions(self.status, _now(), 1, failed, message)
        self._save_status()

    # -- stages -----------------------------------------------------------------------------------------
    def _configs(self, server_url: str) -> StageConfigs:
        return stage_configs(self.spec, str(self.run_dir), server_url)

    def _write_config(self, stage: Stage, config: ApiModel) -> Path:
        path = self.root / "configs" / config_file_name(stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config.to_wire(), sort_keys=False), encoding="utf-8")
        return path

    def _job(self, definition: StageDef, config: ApiModel, key: str) -> ApiModel:
        """A Job stage's job as a local process (or its recorded result, where its inputs key is unchanged)."""
        stage, model = definition.stage, definition.result
        if model is None:
            raise ValueError(f"stage {stage.value} reports no result")
        cached = None if self.force else self.cache.get(stage.value, key)
        if cached is not None:
            result = model.model_validate(cached.result)
            record = self.status.stages.get(stage)
            record.start_time, record.completion_time = cached.start_time, cached.completion_time
            record.duration_seconds = seconds_between(cached.start_time, cached.completion_time)
            self._mark(stage, StagePhase.SUCCEEDED, "Cached", f"inputs unchanged (key {key}): reused")
            return result
        self.cache.forget(stage.value)
        moved = None
        if self.force:  # start fresh even where the inputs key matches: no resuming an earlier run's checkpoints
            moved = move_aside(Path(str(config.to_wire()["outputDir"])), "reasoning run --force")
        aside = f"; earlier artifacts moved aside to {moved}" if moved else ""
        self._mark(
            stage,
            StagePhase.RUNNING,
            "Running",
            " ".join([PROGRAM, *job_args(stage, f"configs/{config_file_name(stage)}")]) + aside,
        )
        started = time.monotonic()
        try:
            message = run_stage(
                stage,
                self._write_config(stage, config),
                self.root / "logs" / f"{stage.value}.log",
                self.root / "stages" / f"{stage.value}.termination",
                echo=self.echo,
            )
            try:
                result = model.model_validate(json.loads(message))
            except (json.JSONDecodeError, ValidationError) as err:
                raise StageFailedError(stage.value, f"{stage.value} reported an invalid result: {err}") from err
        except StageFailedError as err:  # a failed stage's status still says where the earlier artifacts went
            err.note = aside
            raise
        if moved is not None and getattr(result, "stale_artifacts", None) is None:
            result = result.model_copy(update={"stale_artifacts": str(moved)})
        record = self.status.stages.get(stage)
        record.duration_seconds = round(time.monotonic() - started, 1)
        self._mark(stage, StagePhase.SUCCEEDED, "Completed", f"finished in {record.duration_seconds:.0f}s")
        self.cache.put(
            stage.value,
            StageRecord(key, result.to_wire(), record.start_time or _now(), record.completion_time or _now()),
        )
        return result

    def _prepare_assets(self) -> None:
        if self.manifest.local_assets is None:
            return
        data_dir = self.spec.evaluation.data_dir
        try:
            prepare(
                self.manifest.local_assets,
                Path(self.spec.dataset.source),
                Path(self.spec.model.name),
                Path(data_dir) if data_dir else None,
                self.console,
            )
        except ValueError as err:
            raise StageFailedError("curation", str(err)) from err

    def _keys(self, configs: StageConfigs) -> dict[Stage, str]:
        """Each Job stage's inputs key: its config (less where this run listens), the fingerprints of what it
        reads (key_sources), the service's config for a stage that talks to it, and the key of the Job stage
        before it, so a change upstream invalidates everything after."""
        keys: dict[Stage, str] = {}
        upstream: str | None = None
        served: dict[str, Any] | None = None
        for d in pipeline(self.spec):
            config = configs.get(d.stage)
            if config is None:
                raise ValueError(f"stage {d.name} has no config")
            wire = d.keyed(config.to_wire())
            if d.kind == StageKind.SERVICE:
                served = wire
                continue
            inputs = {**wire, **{name: fingerprint(source) for name, source in d.key_sources(self.spec).items()}}
            if d.uses_service:
                inputs["served"] = served
            keys[d.stage] = upstream = stage_key(d.name, inputs, upstream)
        return keys

    def run(self) -> ReasoningRunStatus:
        """Every stage of the run's pipeline in order (the registry's): a Job stage runs its job (or reuses its
        output by key), the service starts once a later stage needs it and stops once none does."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._save_status()
        stages = pipeline(self.spec)
        stage = stages[0].stage
        server: Server | None = None
        try:
            self._prepare_assets()
            port = _free_port()
            configs = self._configs(f"http://127.0.0.1:{port}")
            keys = self._keys(configs)
            for i, d in enumerate(stages):
                stage = d.stage
                config = configs.get(stage)
                assert config is not None  # _keys checked
                users = [u for u in stages[i + 1 :] if u.uses_service]
                if d.kind == StageKind.SERVICE:
                    if not self.force and all(self.cache.get(u.name, keys[u.stage]) is not None for u in users):
                        names = " and ".join(u.name for u in users)
                        self._mark(stage, StagePhase.SUCCEEDED, "NotNeeded", f"{names} results are reused: no server")
                    else:
                        server = self._start_server(stage, config, port)
                    continue
                if server is not None and not d.uses_service:
                    self._stop_server(server)  # no later stage talks to it (export loads the model again): free it
                    server = None
                setattr(self.status, d.name, self._job(d, config, keys[stage]))
                self.status.headline_accuracy = self.status.evaluation.headline() if self.status.evaluation else None
            self._finish(Phase.SUCCEEDED, "all stages finished")
        except StageFailedError as err:
            first_line = (str(err).splitlines() or [""])[0]
            self._mark(Stage(err.stage), StagePhase.FAILED, "Failed", first_line + err.note)
            self._finish(Phase.FAILED, str(err))
        except KeyboardInterrupt:
            self._mark(stage, StagePhase.FAILED, "Interrupted", "interrupted by the user")
            self._finish(Phase.FAILED, "interrupted")
            raise
        finally:
            self._stop_server(server)
        return self.status

    def _start_server(self, stage: Stage, config: ApiModel, port: int) -> Server:
        """Triton (PyTriton) on this machine, on free ports, until no later stage needs it."""
        if not isinstance(config, ServingStageConfig):
            raise TypeError(f"the local runner serves a ServingStageConfig, not {type(config).__name__}")
        serving = config.model_copy(
            update={
                "http_port": port,
                "grpc_port": _free_port(),
                "metrics_port": _free_port(),
                "openai_port": _free_port(),
            }
        )
        self._mark(stage, StagePhase.RUNNING, "Starting", f"Triton (PyTriton) on 127.0.0.1:{port}")
        server = Server(
            self._write_config(stage, serving),
            self.root / "logs" / f"{stage.value}.log",
            f"http://127.0.0.1:{port}/v2/models/{serving.adapter_model_name}/ready",
            extra=["--host", "127.0.0.1"],
        )
        server.start()
        self._mark(stage, StagePhase.SUCCEEDED, "Ready", f"ready on http://127.0.0.1:{port}")
        return server

    def _stop_server(self, server: Server | None) -> None:
        if server is None:
            return
        server.stop()
        if self.status.stages.serving.phase == StagePhase.SUCCEEDED:
            transitions.serving_stopped(self.status, "evaluation finished; the local server was stopped", _now(), 1)
            self._save_status()


def summary_rows(status: ReasoningRunStatus) -> list[dict[str, Any]]:
    return [
        {"stage": s.value, **status.stages.get(s).model_dump(mode="json", by_alias=True, exclude_none=True)}
        for s in status.stages.present()
    ]
