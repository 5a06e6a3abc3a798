"""Turning a causal LM into the trainable model the job runs: LoRA or full fine-tuning, the attention
implementation, selective activation recomputation and regional torch.compile; plus the forward that
returns a summed loss without materialising full logits."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from reasoning_operator.api import LoraSpec

from .attention import VARLEN
from .batching import MicroBatch
from .loss import chunked_cross_entropy_sum, full_cross_entropy_sum


@dataclass(frozen=True)
class Levers:
    """Speed levers that change how, not what, the model computes."""

    attention: str = "sdpa"  # a transformers attention implementation name, or the registered varlen one
    recompute_layers: int = 0  # decoder layers whose activations are recomputed in backward (from the first)
    chunked_loss: bool = True
    compile: bool = False
    tune_kernels: bool = False  # inductor's coordinate-descent tuning of the compiled kernels (a one-off ~3 min)
    activation_budget: float = 1.0  # inductor's activation memory budget for compiled layers (<1: cheap recompute)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    decoder = model.get_decoder()  # type: ignore[operator]
    layers: torch.nn.ModuleList = decoder.layers
    return layers


def apply_lora(model: torch.nn.Module, lora: LoraSpec) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model: torch.nn.Module = get_peft_model(model, config)
    if next(model.parameters()).dtype in (torch.bfloat16, torch.float16):
        # The adapters are fp32 master weights and the step runs under autocast, which already computes the
        # LoRA matmuls in bf16. PEFT would first cast every projection's input to fp32 (and run dropout in
        # fp32): extra full-size copies in both passes for nothing. Keep the input in the low precision.
        for module in peft_model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                setattr(module, "cast_input_dtype_enabled", False)  # noqa: B010
    return peft_model


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import checkpoint

    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def apply_levers(model: torch.nn.Module, levers: Levers) -> None:
    """Recompute the first `recompute_layers` decoder layers and compile every layer (one region, compiled
    once and reused by all layers)."""
    layers = decoder_layers(model)
    if levers.recompute_layers < 0 or levers.recompute_layers > len(layers):
        raise ValueError(f"recompute_layers must be within 0..{len(layers)}, got {levers.recompute_layers}")
    if not 0.0 <= levers.activation_budget <= 1.0:
        raise ValueError(f"activation_budget must be within 0..1, got {levers.activation_budget}")
    if levers.compile and levers.activation_budget < 1.0:
        import torch._functorch.config as functorch_config

        # Process-wide, read when the layers compile (first step); the job's process trains one model.
        functorch_config.activation_memory_budget = levers.activation_budget
    if levers.compile:
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    if levers.compile and levers.tune_kernels:
        import torch._inductor.config as inductor_config

        # The fused quantize/dropout/norm reductions are a large share of a step; tuning their block sizes
        # gave +9% tokens/s on an H200 (bench/train/README.md) for ~3 min of extra compilation at start.
        inductor_config.coordinate_descent_tuning = True
    for index, layer in enumerate(layers):
        recompute = index < levers.recompute_layers
        if not (levers.compile or recompute):
            continue
        forward: Any = layer.forward
        if levers.compile:
            forward = torch.compile(forward)
        if recompute:
            forward = functools.partial(_checkpointed, forward)
        layer.forward = forward


def device_micro_batch(batch: MicroBatch, device: torch.device) -> dict[str, Any]:
    """Tensors for one forward; packed rows also get cumulative sequence lengths for varlen attention."""
    tensors: dict[str, Any] = {
        "input_ids": torch.tensor(batch.input_ids, dtype=torch.long).to(device, non_blocking=True),
        "position_ids": torch.tensor(batch.position_ids, dtype=torch.long).to(device, non_blocking=True),
        "targets": torch.tensor(batch.targets, dtype=torch.long).to(device, non_blocking=True),
    }
    if batch.attention_mask is not None:
        tensors["attention_mask"] = torch.tensor(batch.attention_mask, dtype=torch.long).to(device)
    else:
        cu = [0]
        for length in batch.seq_lengths:
            cu.append(cu[-1] + length)
        tensors["cu_seq_lens_q"] = torch.tensor(cu, dtype=torch.int32).to(device, non_blocking=True)
        tensors["cu_seq_lens_k"] = tensors["cu_seq_lens_q"]
        tensors["max_length_q"] = max(batch.seq_lengths)
        tensors["max_length_k"] = tensors["max_length_q"]
    return tensors


def summed_loss(model: torch.nn.Module, inputs: dict[str, Any], levers: Levers) -> torch.Tensor:
    """Sum of completion-token cross-entropies of one micro batch (the caller divides by the step's total)."""
    decoder = model.get_decoder()  # type: ignore[operator]
    kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "position_ids", "targets", "attention_mask")}
    if levers.attention != VARLEN:
        kwargs = {}
    out = decoder(
        input_ids=inputs["input_ids"],
        position_ids=inputs["position_ids"],
        attention_mask=inputs.get("attention_mask"),
        use_cache=False,
        **kwargs,
    )
    hidden = out.last_hidden_state.reshape(-1, out.last_hidden_state.shape[-1])
    targets = inputs["targets"].reshape(-1)
    weight = model.get_output_embeddings().weight  # type: ignore[operator]
    if levers.chunked_loss:
        return chunked_cross_entropy_sum(hidden, weight, targets)
    return full_cross_entropy_sum(hidden, weight, targets)
