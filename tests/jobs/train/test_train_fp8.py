"""FP8 base weights (`spec.training.fp8BaseWeights`) on the CPU: PyTorch's `_scaled_mm` has a CPU kernel, so
the quantized projection's numerics, its wiring into a PEFT model and the exact merge are tested here; the
speed needs FP8 tensor cores and is measured in bench/train (H100/H200)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from reasoning_jobs.train.fp8 import Fp8FrozenLinear, quantize_frozen_projections, quantize_rows
from reasoning_jobs.train.options import Resolved, RunOptions, resolve_device
from reasoning_jobs.train.trainer import merge_adapter, prepare_model
from reasoning_operator.api import LoraSpec, ModelSpec, TrainingSpec, TrainingStageConfig


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def test_row_quantization_round_trips_within_e4m3_precision() -> None:
    x = torch.randn(64, 256) * torch.logspace(-3, 3, 64).unsqueeze(1)  # rows six orders of magnitude apart
    q, scale = quantize_rows(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (64, 1)
    assert float(q.float().abs().amax()) == 448.0  # each row uses the full e4m3 range
    assert relative_error(q.float() * scale, x) < 0.04  # 3 mantissa bits: ~2^-4 relative rounding


@pytest.mark.parametrize("bias", [False, True])
def test_fp8_linear_matches_the_bf16_projection_forward_and_input_gradient(bias: bool) -> None:
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 384, bias=bias).requires_grad_(False)
    fp8 = Fp8FrozenLinear(linear)
    x = torch.randn(3, 40, 256, requires_grad=True)
    grad = torch.randn(3, 40, 384)
    (dx,) = torch.autograd.grad(fp8(x), x, grad)
    (ref_dx,) = torch.autograd.grad(linear(x), x, grad)
    assert relative_error(fp8(x), linear(x)) < 0.05
    assert relative_error(dx, ref_dx) < 0.05
    assert dx.shape == x.shape and dx.dtype == x.dtype
    assert not fp8.state_dict()  # never saved into checkpoints or adapters
    assert not any(p.requires_grad for p in fp8.parameters())


def config_for(model: Path, tmp_path: Path, **training: object) -> TrainingStageConfig:
    return TrainingStageConfig(
        model=ModelSpec(name=str(model)),
        training=TrainingSpec(
            lora=LoraSpec(rank=8, alpha=16), max_steps=4, checkpoint_interval=2, global_batch_size=4, **training
        ),
        data_path=str(tmp_path / "unused.jsonl"),
        output_dir=str(tmp_path / "out"),
    )


def test_prepare_model_swaps_every_lora_projection_and_the_merge_is_exact(tiny_model: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = config_for(tiny_model, tmp_path, fp8_base_weights=True)
    resolved = Resolved(device="cpu", precision="fp32", attention="sdpa", fp8=True)
    model, _ = prepare_model(
        AutoModelForCausalLM.from_pretrained(tiny_model), config, RunOptions(compile=False), resolved
    )
    swapped = [m for m in model.modules() if isinstance(m, Fp8FrozenLinear)]
    assert len(swapped) == 2 * 7  # two layers × q,k,v,o,gate,up,down
    assert quantize_frozen_projections(model) == 0  # idempotent: nothing left to swap

    # A training step reaches the adapters through the FP8 projections.
    ids = torch.randint(3, 2000, (1, 32))
    model(input_ids=ids, labels=ids).loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)  # a non-zero adapter, so the merge has something to add
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)

    merged = merge_adapter(model, config, adapter)  # FP8 base: merged from the original checkpoint, in bf16
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    reference = PeftModel.from_pretrained(base, str(adapter))
    expected = reference.merge_and_unload().state_dict()
    got = merged.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)


def test_fp8_needs_lora_and_is_ignored_on_the_cpu_with_a_warning(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValidationError, match="fp8BaseWeights needs method lora"):
        TrainingSpec(method="full", fp8_base_weights=True)
    config = config_for(tiny_model, tmp_path, fp8_base_weights=True)
    with caplog.at_level(logging.WARNING, logger="reasoning.train"):
        resolved = resolve_device(config, RunOptions(device="cpu"))
    assert resolved.fp8 is False
    assert "fp8BaseWeights is ignored on the CPU" in caplog.text
