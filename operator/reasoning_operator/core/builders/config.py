"""The run's ConfigMap: each stage's config, the same pydantic stage model the job reads with --config."""

from __future__ import annotations

from typing import Any

import yaml

from reasoning_operator.api import (
    ApiModel,
    CurationStageConfig,
    EvaluationStageConfig,
    ServingStageConfig,
    Stage,
    TrainingStageConfig,
)

from ..run import CONFIG_MOUNT, Run


def stage_configs(run: Run, server_url: str) -> dict[Stage, ApiModel]:
    spec = run.spec
    curated = f"{run.run_dir}/curated"
    trained = f"{run.run_dir}/train"
    return {
        Stage.CURATION: CurationStageConfig(
            dataset=spec.dataset, curation=spec.curation, tokenizer=spec.tokenizer(), output_dir=curated
        ),
        Stage.TRAINING: TrainingStageConfig(
            model=spec.model,
            training=spec.training,
            data_path=f"{curated}/training.jsonl",
            output_dir=trained,
        ),
        Stage.SERVING: ServingStageConfig(
            model=spec.model,
            serving=spec.serving,
            adapter_path=f"{trained}/adapter" if spec.training.method == "lora" else None,
        ),
        Stage.EVALUATION: EvaluationStageConfig(
            evaluation=spec.evaluation,
            server_url=server_url,
            models=["trained", "base"] if spec.evaluation.compare_base else ["trained"],
            output_dir=f"{run.run_dir}/eval",
        ),
    }


def config_file(stage: Stage) -> str:
    return f"{CONFIG_MOUNT}/{stage.value}.yaml"


def build_config_map(run: Run, server_url: str) -> dict[str, Any]:
    data = {
        f"{stage.value}.yaml": yaml.safe_dump(config.to_wire(), sort_keys=False)
        for stage, config in stage_configs(run, server_url).items()
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": run.metadata(run.config_map_name, component="config"),
        "data": data,
    }
