"""Variable-length (padding-free) attention for packed rows, plugged into transformers' attention registry.

Packed rows carry several samples; each must attend only to itself. On CUDA a varlen kernel takes the
cumulative sequence lengths directly, so no mask is built and no FLOPs are spent across samples: Flash-Attention
4's CuTe DSL kernels (`flash_attn.cute`, package `flash-attn-4`, extra `train-gpu`) on Hopper where they are
installed, else PyTorch's `torch.nn.attention.varlen.varlen_attn` (Flash-Attention 2 inside PyTorch). On the CPU
the same function runs one causal SDPA per sample (5x faster than SDPA with a block-diagonal mask on a packed
16-sample row of the tiny quickstart model). transformers' own SDPA path (`--attention sdpa`) builds that
block-diagonal mask from the restarting position ids.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
from functools import cache
from typing import Any

import torch

VARLEN = "reasoning_varlen"
#: SDPA backends, in order of preference, for a row holding one sample. cuDNN's fused attention ran forward +
#: backward of a causal 8k row 1.79x faster than Flash-Attention 2 on an H100 (bench/train/attention_check.py).
#: PyTorch 2.11 picks it by itself there; asking for it keeps it where a version would not. PyTorch falls back
#: to the next backend where one cannot run.
DENSE_BACKENDS = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
#: Packed rows through Flash-Attention 4 where `flash_attn.cute` imports and the GPU is Hopper (forward + backward
#: 1.33x PyTorch's `varlen_attn` on 8k rows of the benchmark's samples and 1.53x on 16k rows, H100,
#: bench/train/attention_check.py; not measured on other GPUs, so not used there). False: always `varlen_attn`.
PREFER_FA4 = True
#: Whether the installed varlen kernel takes fewer K/V heads than Q heads as-is (Flash-Attention does);
#: probed on the first call when the signature has no `enable_gqa`.
_native_gqa: bool | None = None


@cache
def _varlen_kwargs() -> tuple[dict[str, Any], bool]:
    """PyTorch 2.10 takes `is_causal`; later versions take `window_size` and `enable_gqa`."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    causal: dict[str, Any] = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    if "enable_gqa" in params:
        causal["enable_gqa"] = True
    return causal, "scale" in params


@cache
def _fa4_varlen(capability: tuple[int, int]) -> Any | None:
    """Flash-Attention 4's varlen function where it can run here, else None (not installed, or its CUDA DSL
    runtime does not load)."""
    if capability[0] != 9:
        return None
    try:
        return importlib.import_module("flash_attn.cute").flash_attn_varlen_func
    except Exception:  # ImportError, or the CuTe DSL's native libraries failing to load
        return None


def packed_fa4(device: torch.device) -> Any | None:
    """Flash-Attention 4's varlen function if packed rows on `device` go through it, else None (`varlen_attn`)."""
    if not PREFER_FA4 or device.type != "cuda":
        return None
    return _fa4_varlen(torch.cuda.get_device_capability(device))


def packed_kernel(device: torch.device) -> str:
    """The kernel's name, for logs and benchmark records."""
    return "fa4" if packed_fa4(device) is not None else "pytorch"


def fa4_packed_attention(
    fa4: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_length: int,
    scaling: float | None,
) -> torch.Tensor:  # fmt: skip
    """Causal attention within each packed sample; q/k/v are [tokens, heads, dim] (fewer K/V heads: GQA as-is)."""
    out = fa4(
        q, k, v, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens, max_seqlen_q=max_length,
        max_seqlen_k=max_length, softmax_scale=scaling, causal=True,
    )  # fmt: skip
    return torch.as_tensor(out[0] if isinstance(out, tuple) else out)


def varlen_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    return True


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention interface: q/k/v are [batch, heads, seq, dim]; returns [batch, seq, heads, dim]."""
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    max_length = kwargs.get("max_length_q")
    if cu_seqlens is None or max_length is None:
        raise RuntimeError("varlen attention needs cu_seq_lens_q/max_length_q (packed micro batches only)")
    if not query.is_cuda:
        return _reference_varlen(query, key, value, cu_seqlens, scaling), None
    rows = equal_samples(query.shape[0], query.shape[2], cu_seqlens, int(max_length))
    if rows:
        return dense_causal(query, key, value, rows, scaling), None
    batch, heads, seq, dim = query.shape
    kv_heads = key.shape[1]
    q = query.transpose(1, 2).reshape(batch * seq, heads, dim)
    k = key.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    v = value.transpose(1, 2).reshape(batch * seq, kv_heads, dim)
    fa4 = packed_fa4(query.device)
    if fa4 is not None:
        packed = fa4_packed_attention(fa4, q, k, v, cu_seqlens, int(max_length), scaling)
        return packed.reshape(batch, seq, heads, dim), None
    from torch.nn.attention.varlen import varlen_attn

    global _native_gqa
    extra, has_scale = _varlen_kwargs()
    if has_scale and scaling is not None:
        extra = {**extra, "scale": scaling}
    if "enable_gqa" not in extra and kv_heads != heads and _native_gqa is not True:
        if _native_gqa is None:
            try:
                out = varlen_attn(q, k, v, cu_seqlens, cu_seqlens, int(max_length), int(max_length), **extra)
                _native_gqa = True
                return torch.as_tensor(out).reshape(batch, seq, heads, dim), None
            except RuntimeError:
                _native_gqa = False
        k = k.repeat_interleave(heads // kv_heads, dim=1)
        v = v.repeat_interleave(heads // kv_heads, dim=1)
    out = varlen_attn(q, k, v, cu_seqlens, cu_seqlens, int(max_length), int(max_length), **extra)
    return torch.as_tensor(out).reshape(batch, seq, heads, dim), None


def equal_samples(batch: int, seq: int, cu_seqlens: torch.Tensor, max_length: int) -> int:
    """How many samples share the row when all have the same length (a row of one, or full-length samples
    packed together), else 0. From shapes alone: n samples of at most `max_length` fill `seq` only if each has
    exactly that length, so nothing is read back from the GPU."""
    samples = cu_seqlens.numel() - 1
    return samples if batch == 1 and samples * max_length == seq else 0


def dense_causal(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, rows: int, scaling: float | None
) -> torch.Tensor:
    """Equal-length samples as a batch of dense causal rows: the dense kernels (cuDNN's first) are faster than
    the varlen one on long rows, and a row of two 8k samples is what a 16k maxSeqLength packs from 8k data."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _, heads, seq, dim = query.shape

    def split(t: torch.Tensor) -> torch.Tensor:  # [1, h, rows*L, d] -> [rows, h, L, d]
        return t[0].view(t.shape[1], rows, seq // rows, t.shape[3]).transpose(0, 1)

    backends = DENSE_BACKENDS if query.is_cuda else ("MATH",)
    with sdpa_kernel([getattr(SDPBackend, name) for name in backends], set_priority=True):
        dense = torch.nn.functional.scaled_dot_product_attention(
            split(query), split(key), split(value), is_causal=True, scale=scaling, enable_gqa=True
        )
    return dense.transpose(1, 2).reshape(1, seq, heads, dim)


#: Run eagerly under torch.compile (a graph break): the kernel takes Python ints that would otherwise
#: specialise the compiled layer on every new sample length.
varlen_attention_forward = torch.compiler.disable(varlen_attention_forward)  # type: ignore[no-untyped-call]


def _reference_varlen(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seqlens: torch.Tensor, scaling: float | None
) -> torch.Tensor:
    """Same maths, one causal SDPA per sample: the CPU implementation."""
    bounds = cu_seqlens.tolist()
    parts = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], is_causal=True, scale=scaling, enable_gqa=True
        )
        for a, b in itertools.pairwise(bounds)
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous()


def register_varlen_attention() -> str:
    """Register once; returns the name to set as the model's attention implementation."""
    from transformers import AttentionInterface

    AttentionInterface.register(VARLEN, varlen_attention_forward)
    return VARLEN
