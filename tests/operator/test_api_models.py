"""The API models: defaults are the reference recipe, bad values are rejected with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reasoning_operator.api import ReasoningRunSpec, TrainingStageConfig
from reasoning_operator.api.spec import DEFAULT_GPU_PRODUCTS, LORA_TARGETS


def test_defaults_are_the_reference_recipe() -> None:
    spec = ReasoningRunSpec()
    t = spec.training
    assert (t.lora.rank, t.lora.alpha, t.lora.target_modules) == (64, 128, LORA_TARGETS)
    assert (t.learning_rate, t.lr_schedule, t.warmup_ratio, t.weight_decay) == (1e-4, "cosine", 0.05, 0.001)
    assert (t.global_batch_size, t.max_steps, t.shuffle) == (256, 2000, False)
    assert spec.model.name == "meta-llama/Llama-3.1-8B-Instruct"
    assert spec.dataset.filename_filters == ["math_v1.1", "chat"]
    assert spec.dataset.used_in_training == "Nano"
    assert (spec.curation.max_token_count, spec.curation.max_completion_token_count) == (8192, 16384)
    assert spec.evaluation.benchmarks == ["gpqa_diamond", "gpqa_main", "mmlu"]
    assert spec.evaluation.modes == ["on", "off"]
    assert "NVIDIA-H100-80GB-HBM3" in t.accepted_gpu_products
    assert t.accepted_gpu_products == DEFAULT_GPU_PRODUCTS


def test_wire_format_is_camel_case_and_round_trips() -> None:
    spec = ReasoningRunSpec.model_validate({"training": {"globalBatchSize": 128, "microBatchSize": 4}})
    wire = spec.to_wire()
    assert wire["training"]["globalBatchSize"] == 128
    assert ReasoningRunSpec.model_validate(wire) == spec


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"training": {"learningRate": 0}}, "learningRate"),
        ({"training": {"lora": {"rank": 0}}}, "rank"),
        ({"training": {"precision": "int3"}}, "precision"),
        ({"evaluation": {"benchmarks": ["hellaswag"]}}, "benchmarks"),
        ({"dataset": {"source": "ftp://x"}}, "source"),
        ({"storage": {"size": "lots"}}, "size"),
        ({"training": {"unknownKnob": 1}}, "unknownKnob"),
    ],
)
def test_bad_values_name_the_field(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ReasoningRunSpec.model_validate(patch)
    assert field in str(err.value)


def test_stage_config_embeds_the_same_section_models() -> None:
    spec = ReasoningRunSpec()
    config = TrainingStageConfig(model=spec.model, training=spec.training, data_path="/d", output_dir="/o")
    again = TrainingStageConfig.model_validate(config.to_wire())
    assert again.training == spec.training


def test_cross_field_rules_hold_without_an_apiserver() -> None:
    with pytest.raises(ValidationError, match=r"multiple of spec\.training\.microBatchSize"):
        ReasoningRunSpec.model_validate({"training": {"globalBatchSize": 10, "microBatchSize": 4}})
    with pytest.raises(ValidationError, match="checkpointInterval"):
        ReasoningRunSpec.model_validate({"training": {"maxSteps": 10, "checkpointInterval": 50}})


def test_full_fine_tuning_needs_a_backend_that_serves_it() -> None:
    """The vllm backend serves base + LoRA adapter only: the CEL rule's twin names both fields."""
    with pytest.raises(ValidationError, match=r"spec\.training\.method full needs spec\.serving\.backend pytriton"):
        ReasoningRunSpec.model_validate({"training": {"method": "full"}})
    spec = ReasoningRunSpec.model_validate({"training": {"method": "full"}, "serving": {"backend": "pytriton"}})
    assert spec.serving.backend == "pytriton"
    assert ReasoningRunSpec.model_validate({"training": {"method": "lora"}}).serving.backend == "vllm"
