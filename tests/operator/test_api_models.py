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


# Values the apiserver accepted before but Kubernetes refuses in the child built from them (issue 24).
CHILD_BREAKERS = [
    ({"model": {"hubTokenSecret": {"name": "Bad_Name"}}}, "hubTokenSecret.name"),
    ({"model": {"hubTokenSecret": {"name": "hf", "key": "a/b"}}}, "hubTokenSecret.key"),
    ({"model": {"hubTokenSecret": {"name": "hf", "key": "."}}}, "hubTokenSecret.key"),
    ({"model": {"hubTokenSecret": {"name": "hf", "key": "..token"}}}, "hubTokenSecret.key"),
    ({"dataset": {"credentialsSecret": "a..b"}}, "credentialsSecret"),
    ({"storage": {"storageClassName": "fast ssd; rm -rf"}}, "storageClassName"),
    ({"storage": {"existingClaim": "Claim"}}, "existingClaim"),
    ({"storage": {"size": "0"}}, "size"),
    ({"storage": {"size": "0.0Gi"}}, "size"),
    ({"training": {"resources": {"memory": "0"}}}, "memory"),
    ({"training": {"acceptedGpuProducts": [""]}}, "acceptedGpuProducts"),
    ({"training": {"acceptedGpuProducts": ["NVIDIA H100"]}}, "acceptedGpuProducts"),
    ({"training": {"acceptedGpuProducts": ["A" * 64]}}, "acceptedGpuProducts"),
    ({"training": {"acceptedGpuProducts": ["A100", "A100"]}}, "acceptedGpuProducts"),
    ({"evaluation": {"benchmarks": ["mmlu", "mmlu"]}}, "benchmarks"),
    ({"evaluation": {"modes": ["on", "on"]}}, "modes"),
    ({"dataset": {"filenameFilters": ["chat", ""]}}, "filenameFilters"),
    ({"serving": {"maxModelLen": 2**62}}, "maxModelLen"),
    ({"model": {"name": "m" * 1025}}, "name"),
    ({"curation": {"categoryCaps": {"a b": 1}}}, "categoryCaps"),
    ({"progressDeadlineSeconds": 0}, "progressDeadlineSeconds"),
]


@pytest.mark.parametrize(("patch", "field"), CHILD_BREAKERS, ids=[f for _, f in CHILD_BREAKERS])
def test_values_that_would_break_a_child_are_refused(patch: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ReasoningRunSpec.model_validate(patch)
    assert field.split(".")[-1] in str(err.value)


def test_valid_names_and_quantities_still_pass() -> None:
    spec = ReasoningRunSpec.model_validate(
        {
            "model": {"hubTokenSecret": {"name": "hf.token-1", "key": "HF_TOKEN.v2"}},
            "storage": {"size": "0.5Ti", "storageClassName": "fast-ssd.example.com"},
            "training": {"acceptedGpuProducts": ["NVIDIA-H100_80GB.v2", "A" * 63]},
        }
    )
    assert spec.storage.size == "0.5Ti"


def test_full_fine_tuning_needs_a_backend_that_serves_it() -> None:
    """The vllm backend serves base + LoRA adapter only: the CEL rule's twin names both fields."""
    with pytest.raises(ValidationError, match=r"spec\.training\.method full needs spec\.serving\.backend pytriton"):
        ReasoningRunSpec.model_validate({"training": {"method": "full"}})
    spec = ReasoningRunSpec.model_validate({"training": {"method": "full"}, "serving": {"backend": "pytriton"}})
    assert spec.serving.backend == "pytriton"
    assert ReasoningRunSpec.model_validate({"training": {"method": "lora"}}).serving.backend == "vllm"
