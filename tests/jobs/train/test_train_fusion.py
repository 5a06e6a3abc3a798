"""Fused q/k/v and gate/up projections (train/fusion.py) compute exactly what PEFT's separate projections do:
same loss and same adapter gradients on a packed micro batch, the adapter still saves and merges, and groups
PEFT computes differently (dropout) are left alone. CPU, float64, the tiny Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reasoning_jobs.train.attention import register_varlen_attention
from reasoning_jobs.train.batching import packed_micro_batch
from reasoning_jobs.train.data import Sample
from reasoning_jobs.train.fusion import fuse_projections, unfuse_projections
from reasoning_jobs.train.modeling import Levers, apply_lora, device_micro_batch, summed_loss
from reasoning_operator.api import LoraSpec

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_model(tiny_model: Path, dropout: float = 0.0) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64, attn_implementation="sdpa")
    model = apply_lora(model, LoraSpec(rank=8, alpha=16, dropout=dropout, target_modules=TARGETS))
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():  # PEFT starts B at zero, which would hide a wrong B or scaling in the fused path
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.05)
    return model


def loss_and_grads(model: torch.nn.Module, attention: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.config._attn_implementation = attention  # type: ignore[union-attr]
    generator = torch.Generator().manual_seed(3)
    samples = [
        Sample(input_ids=torch.randint(5, 2000, (n,), generator=generator).tolist(), prompt_length=p, line=i)
        for i, (n, p) in enumerate([(11, 4), (23, 9), (7, 2)])
    ]
    inputs = device_micro_batch(packed_micro_batch(samples), torch.device("cpu"))
    loss = summed_loss(model, inputs, Levers(attention=attention))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads


@pytest.mark.parametrize("attention", ["sdpa", "varlen"])
def test_fused_projections_give_peft_loss_and_adapter_gradients(tiny_model: Path, attention: str) -> None:
    name = register_varlen_attention() if attention == "varlen" else "sdpa"
    model = lora_model(tiny_model)
    expected_loss, expected_grads = loss_and_grads(model, name)
    assert fuse_projections(model) == 4  # q/k/v and gate/up in each of the 2 layers
    assert fuse_projections(model) == 0  # already fused: nothing done twice
    loss, grads = loss_and_grads(model, name)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-12, atol=1e-12)
    assert grads.keys() == expected_grads.keys() and len(grads) == 2 * len(TARGETS) * 2  # A and B per projection
    for key, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[key], rtol=1e-10, atol=1e-12, msg=key)


def test_fusion_adds_no_weight_memory_and_unfusing_restores_standalone_weights(
    tiny_model: Path, tmp_path: Path
) -> None:
    model = lora_model(tiny_model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    fuse_projections(model)
    attn = model.base_model.model.model.layers[0].self_attn  # type: ignore[union-attr]
    q, k = attn.q_proj.base_layer.weight, attn.k_proj.base_layer.weight
    assert q.untyped_storage().data_ptr() == k.untyped_storage().data_ptr()  # views of one fused tensor
    assert unfuse_projections(model) == 4
    assert type(attn).__name__ == "LlamaAttention" and "fused_weight" not in attn._buffers  # stock again
    q, k = attn.q_proj.base_layer.weight, attn.k_proj.base_layer.weight
    assert q.untyped_storage().data_ptr() != k.untyped_storage().data_ptr()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter, before[name], rtol=0, atol=0)
    merged = model.merge_and_unload()  # type: ignore[operator]
    merged.save_pretrained(tmp_path / "merged")  # safetensors refuses weights that share memory


def test_dropout_keeps_peft_projections(tiny_model: Path) -> None:
    """LoRA dropout draws a mask per projection: a shared input for the fused A would change the result."""
    model = lora_model(tiny_model, dropout=0.1)
    assert fuse_projections(model) == 0


def test_the_job_fuses_lora_without_dropout(tiny_model: Path) -> None:
    from reasoning_jobs.train.modeling import apply_levers

    model = lora_model(tiny_model)
    apply_levers(model, Levers(fuse_projections=True))
    layers = model.base_model.model.model.layers  # type: ignore[union-attr]
    assert {type(layer.self_attn).__name__ for layer in layers} == {"FusedLlamaAttention"}
    assert {type(layer.mlp).__name__ for layer in layers} == {"FusedLlamaMLP"}
    assert not any("fused" in key for key in model.state_dict())  # checkpoints and adapters are unchanged


def test_fused_fp8_projections_keep_the_forward_and_gradients_of_separate_ones(tiny_model: Path) -> None:
    """FP8 base weights (CPU `_scaled_mm`): concatenating rows keeps each row's scale, so the forward is the
    separate projections' exactly; the input gradient is quantized per row of the concatenated gradient instead
    of per projection, so gradients agree to FP8 precision only."""
    from reasoning_jobs.train.fp8 import quantize_frozen_projections

    model = lora_model(tiny_model)
    model.float()
    assert quantize_frozen_projections(model) == 2 * len(TARGETS)
    expected_loss, expected_grads = loss_and_grads(model, "sdpa")
    assert fuse_projections(model) == 4
    loss, grads = loss_and_grads(model, "sdpa")
    torch.testing.assert_close(loss, expected_loss, rtol=1e-6, atol=1e-6)
    for key, grad in grads.items():
        error = float((grad - expected_grads[key]).norm() / expected_grads[key].norm())
        assert error < 0.05, (key, error)


def test_the_memory_planner_counts_fused_weights_once(tiny_model: Path) -> None:
    from reasoning_jobs.train.memory import fixed_bytes

    model = lora_model(tiny_model)
    before = fixed_bytes(model)
    assert fuse_projections(model) == 4
    assert fixed_bytes(model) == before  # the members' weights are views of the fused buffers
