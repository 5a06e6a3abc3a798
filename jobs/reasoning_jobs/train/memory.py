"""How many decoder layers to recompute so a micro batch's activations fit the GPU.

Recomputing a layer costs a second forward of it (about +1/3 of its time), so the job recomputes only as
many layers as memory demands. Activation bytes per token per layer were measured on the Llama-3.1-8B
architecture (LoRA r64, varlen attention, bench/train/README.md): with LoRA dropout, about 2·(12·d + 6·ffn)
bytes in eager mode and 2·(12·d + 4·ffn) compiled (inductor recomputes cheap elementwise ops instead of saving
them). Without dropout the adapters share their projection's saved input instead of keeping a dropped copy of
it each (three of d for q/k/v, one for o, two for gate/up, one of ffn for down): 5·d + ffn fewer elements,
2·(7·d + 3·ffn) bytes compiled, 145 KB per token measured against 143 KB estimated (H100, FP8 base, run 10).

Where that does not fit, recomputing whole layers is the expensive way out: inductor's activation memory budget
(`torch._functorch.config.activation_memory_budget` < 1) first lets its partitioner recompute cheap elementwise
work inside every layer (the norms, SiLU·up) instead of saving it: one d- and one ffn-sized tensor fewer,
2·(6·d + 2·ffn) bytes, 106.8 KB per token measured against 106.5 KB (H100, FP8 base, no dropout, run 14). At
16k tokens on an H100 that fits all 32 layers, 17,147 tok/s against 16,223 with 6 layers recomputed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

#: Workspace beyond weights, optimizer state and activations (allocator slack, CE chunks, kernels).
SLACK_BYTES = 6 * 1024**3
USABLE_FRACTION = 0.95
#: The activation memory budget that makes inductor recompute cheap elementwise work (0.8 and 0.7 saved the same
#: tensors and ran at the same speed, run 14); only measured compiled and without dropout, so used only there.
CHEAP_RECOMPUTE_BUDGET = 0.8


@dataclass(frozen=True)
class RecomputePlan:
    layers: int  # decoder layers recomputed whole, from the first
    activation_budget: float = 1.0  # inductor's activation memory budget for the compiled layers


def activation_bytes_per_layer(
    hidden: int,
    ffn: int,
    tokens: int,
    compiled: bool,
    element_bytes: int = 2,
    dropout: bool = True,
    cheap_recompute: bool = False,
) -> int:
    elements = 12 * hidden + (4 if compiled else 6) * ffn
    if not dropout:
        elements -= 5 * hidden + ffn
    if cheap_recompute:
        elements -= hidden + ffn
    return tokens * element_bytes * elements


def host_memory_bytes() -> int:
    """Physical memory of this machine (the CPU path's 'device')."""
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def tensor_bytes(tensors: Any) -> int:
    """Bytes held by `tensors`, each storage once (tied embeddings, views of one tensor)."""
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        if tensor.device.type == "meta":  # no storage to share: planned from shapes
            total += tensor.numel() * tensor.element_size()
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def fixed_bytes(model: torch.nn.Module) -> int:
    weights = tensor_bytes([*model.parameters(), *model.buffers()])  # buffers: e.g. FP8 base weights
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return weights + trainable * 12 + SLACK_BYTES  # fp32 grad + two AdamW moments


def auto_recompute_layers(
    model: torch.nn.Module,
    num_layers: int,
    tokens: int,
    compiled: bool,
    device_bytes: int,
    element_bytes: int = 2,
    dropout: bool = True,
    cheap_recompute: bool = False,
) -> int:
    """Fewest recomputed layers whose estimated peak stays under USABLE_FRACTION of the device. `dropout`:
    whether LoRA adapters drop their input (full fine-tuning is estimated as with dropout: not measured)."""
    config: Any = model.config
    hidden, ffn = int(config.hidden_size), int(config.intermediate_size)
    per_layer = activation_bytes_per_layer(hidden, ffn, tokens, compiled, element_bytes, dropout, cheap_recompute)
    spare = USABLE_FRACTION * device_bytes - fixed_bytes(model) - num_layers * per_layer
    if spare >= 0:
        return 0
    # A recomputed layer keeps only its input (2·d bytes per token) instead of its activations.
    saved_per_layer = per_layer - tokens * element_bytes * hidden
    return min(num_layers, math.ceil(-spare / max(1, saved_per_layer)))


def plan_recompute(
    model: torch.nn.Module,
    num_layers: int,
    tokens: int,
    compiled: bool,
    device_bytes: int,
    element_bytes: int = 2,
    dropout: bool = True,
) -> RecomputePlan:
    """No recomputation where the activations fit; else, for compiled layers without dropout, the cheap-recompute
    budget and only the whole layers still needed with it; else whole layers."""
    layers = auto_recompute_layers(model, num_layers, tokens, compiled, device_bytes, element_bytes, dropout)
    if layers == 0 or not compiled or dropout:
        return RecomputePlan(layers)
    cheap = auto_recompute_layers(
        model, num_layers, tokens, compiled, device_bytes, element_bytes, dropout=False, cheap_recompute=True
    )
    return RecomputePlan(cheap, CHEAP_RECOMPUTE_BUDGET)
