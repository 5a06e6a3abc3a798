"""One matmul for the projections that read the same input: q/k/v in attention, gate/up in the MLP.

PEFT wraps every projection on its own, so a Llama layer quantizes and multiplies its attention input three
times and its MLP input twice, runs five small LoRA-A products, and in backward five input-gradient matmuls
whose results are summed. Here each group runs as one: the frozen weights are concatenated along the output
rows (exact, also for FP8 with its per-row scales: the rows keep their scales), the adapters' A matrices are
concatenated per step (one product, one read of the input; their gradients flow back to PEFT's own
parameters), and each member's B is applied to its slice. The members' base weights become views of the
concatenated tensor, so no memory is added and the PEFT modules still work on their own (saving, merging,
`unfuse_projections` restores the stock forwards).

A fused module gets a subclass of its own class whose forward reads the fused weights from the module's
(non-persistent) buffers: every layer then runs the same code on its own tensors, so torch.compile compiles
the layer once for all 32, as it does the stock one (per-layer Python objects would be guarded one by one).

Only where it is the same computation as PEFT's: a Llama-style layer (q/k/v/o and gate/up/down projections,
no bias, SiLU), every member a plain LoRA linear with one active adapter, no dropout (dropout draws a mask per
projection), no DoRA, not merged.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch.nn import functional

from .fp8 import Fp8FrozenLinear, _FrozenFp8Matmul

ATTENTION_GROUP = ("q_proj", "k_proj", "v_proj")
MLP_GROUP = ("gate_proj", "up_proj")
_ADAPTER = "_reasoning_fused_adapter"
_BUFFERS = ("fused_weight", "fused_weight_fp8", "fused_weight_scale")


def _fusable_member(module: Any) -> str | None:
    """The adapter name if `module` is a vanilla PEFT LoRA linear that a fused group computes exactly."""
    if not (hasattr(module, "lora_A") and hasattr(module, "base_layer")):
        return None
    base = module.base_layer
    if not isinstance(base, (torch.nn.Linear, Fp8FrozenLinear)) or base.bias is not None:
        return None
    if isinstance(base, torch.nn.Linear) and base.weight.requires_grad:
        return None
    adapters = list(module.active_adapters)
    if len(adapters) != 1 or module.merged or module.disable_adapters:
        return None
    name = adapters[0]
    if name not in module.lora_A or name in getattr(module, "lora_variant", {}):
        return None
    if module.use_dora.get(name, False) or module.lora_B[name].bias is not None:
        return None
    if not isinstance(module.lora_dropout[name], torch.nn.Identity):
        return None
    return str(name)


def _fusable_group(owner: torch.nn.Module, names: tuple[str, ...]) -> str | None:
    members = [getattr(owner, n, None) for n in names]
    adapters = {_fusable_member(m) for m in members}
    if len(adapters) != 1 or None in adapters:
        return None
    if len({type(m.base_layer) for m in members}) != 1:  # type: ignore[union-attr]
        return None
    return adapters.pop()


def _fuse_weights(owner: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Concatenate the members' frozen weights into buffers of `owner`; the members keep views of them."""
    bases = [getattr(owner, n).base_layer for n in names]
    sizes = [int(b.out_features) for b in bases]
    if isinstance(bases[0], Fp8FrozenLinear):
        fp8 = torch.cat([b.weight_fp8 for b in bases])
        scale = torch.cat([b.weight_scale for b in bases], dim=1)
        owner.register_buffer("fused_weight_fp8", fp8, persistent=False)
        owner.register_buffer("fused_weight_scale", scale, persistent=False)
        for base, q, s in zip(bases, torch.split(fp8, sizes), torch.split(scale, sizes, dim=1), strict=True):
            base.weight_fp8, base.weight_scale = q, s
    else:
        weight = torch.cat([b.weight.detach() for b in bases])
        owner.register_buffer("fused_weight", weight, persistent=False)
        for base, view in zip(bases, torch.split(weight, sizes), strict=True):
            base.weight = torch.nn.Parameter(view, requires_grad=False)


def _release_weights(owner: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Members own their weights again (safetensors refuses tensors that share memory); buffers dropped."""
    for name in names:
        base = getattr(owner, name).base_layer
        if isinstance(base, Fp8FrozenLinear):
            base.weight_fp8, base.weight_scale = base.weight_fp8.clone(), base.weight_scale.clone()
        else:
            base.weight = torch.nn.Parameter(base.weight.detach().clone(), requires_grad=False)
    for buffer in _BUFFERS:
        owner._buffers.pop(buffer, None)


def _group_forward(owner: Any, names: tuple[str, ...], x: torch.Tensor) -> list[torch.Tensor]:
    """The members' outputs from one frozen matmul, one LoRA-A product and a LoRA-B product each."""
    adapter = getattr(owner, _ADAPTER)
    members = [getattr(owner, n) for n in names]
    if "fused_weight_fp8" in owner._buffers:
        base: torch.Tensor = _FrozenFp8Matmul.apply(x, owner.fused_weight_fp8, owner.fused_weight_scale)
    else:
        base = functional.linear(x, owner.fused_weight)
    a = torch.cat([m.lora_A[adapter].weight for m in members])
    ranks = [int(m.lora_A[adapter].weight.shape[0]) for m in members]
    sizes = [int(m.base_layer.out_features) for m in members]
    outputs = []
    for member, part, low_rank in zip(
        members, torch.split(base, sizes, dim=-1), torch.split(functional.linear(x, a), ranks, dim=-1), strict=True
    ):
        delta = functional.linear(low_rank, member.lora_B[adapter].weight) * member.scaling[adapter]
        outputs.append((part + delta).to(part.dtype))
    return outputs


def _attention_forward(
    self: Any, hidden_states: torch.Tensor, position_embeddings: Any = None, attention_mask: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:  # fmt: skip
    """LlamaAttention.forward for training (no KV cache) with q/k/v from one fused group."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    for cache_key in ("cache", "past_key_values", "past_key_value"):
        if kwargs.pop(cache_key, None) is not None:
            raise ValueError("fused projections are a training path: no KV cache (unfuse_projections first)")
    kwargs.pop("cache_position", None)
    stock = sys.modules[type(self).__bases__[0].__module__]  # transformers' modeling module of this layer
    shape = (*hidden_states.shape[:-1], -1, self.head_dim)
    query, key, value = (t.view(shape).transpose(1, 2) for t in _group_forward(self, ATTENTION_GROUP, hidden_states))
    cos, sin = position_embeddings
    query, key = stock.apply_rotary_pos_emb(query, key, cos, sin)
    implementation = self.config._attn_implementation
    interface = stock.eager_attention_forward if implementation == "eager" else ALL_ATTENTION_FUNCTIONS[implementation]
    out, weights = interface(
        self, query, key, value, attention_mask,
        dropout=0.0 if not self.training else self.attention_dropout, scaling=self.scaling, **kwargs,
    )  # fmt: skip
    out = out.reshape(*hidden_states.shape[:-1], -1).contiguous()
    return self.o_proj(out), weights


def _mlp_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    gate, up = _group_forward(self, MLP_GROUP, x)
    out: torch.Tensor = self.down_proj(self.act_fn(gate) * up)
    return out


_FUSED_CLASSES: dict[type, type] = {}
#: stock class name -> (the group it fuses, the forward of its fused subclass)
_KINDS: dict[str, tuple[tuple[str, ...], Any]] = {
    "LlamaAttention": (ATTENTION_GROUP, _attention_forward),
    "LlamaMLP": (MLP_GROUP, _mlp_forward),
}


def _fused_class(stock: type) -> type:
    if stock not in _FUSED_CLASSES:
        forward = _KINDS[stock.__name__][1]
        _FUSED_CLASSES[stock] = type(f"Fused{stock.__name__}", (stock,), {"forward": forward, "_fused": True})
    return _FUSED_CLASSES[stock]


def _applies(module: torch.nn.Module) -> bool:
    config: Any = getattr(module, "config", None)
    if type(module).__name__ == "LlamaAttention":
        return getattr(config, "attention_bias", True) is False
    if type(module).__name__ == "LlamaMLP":
        return getattr(config, "hidden_act", None) == "silu"
    return False


def fuse_projections(model: torch.nn.Module) -> int:
    """Fuse q/k/v and gate/up wherever that is exactly PEFT's computation; returns how many groups were fused.
    Call after the adapters (and FP8 base weights) are in place and before the layers are compiled."""
    fused = 0
    for module in list(model.modules()):
        if getattr(module, "_fused", False) or not _applies(module):
            continue
        names = _KINDS[type(module).__name__][0]
        adapter = _fusable_group(module, names)
        if adapter is None:
            continue
        _fuse_weights(module, names)
        setattr(module, _ADAPTER, adapter)
        module.__class__ = _fused_class(type(module))
        fused += 1
    return fused


def unfuse_projections(model: torch.nn.Module) -> int:
    """Give every fused module its stock class and its members their own weights back (before merging or
    saving whole weights); returns how many groups were undone."""
    restored = 0
    for module in model.modules():
        if getattr(module, "_fused", False):
            stock = type(module).__bases__[0]
            _release_weights(module, _KINDS[stock.__name__][0])
            delattr(module, _ADAPTER)
            module.__class__ = stock
            restored += 1
    return restored
