"""Cross-entropy over a large vocabulary without materialising the full logits.

The lm_head matmul, log-softmax and its gradient are done chunk by chunk inside one autograd function (the
idea behind Liger's fused linear cross-entropy): only the hidden-state gradient (and, for full fine-tuning,
the lm_head weight gradient) is kept, never the [tokens × 128k] fp32 logits and their gradient.
"""

from __future__ import annotations

from typing import Any

import torch

from .data import IGNORE_INDEX


def _chunk_stats(logits: torch.Tensor, safe: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Summed cross-entropy of one chunk's valid rows, with the upcast logits and their logsumexp."""
    x = logits.to(torch.promote_types(logits.dtype, torch.float32))  # the softmax runs in fp32 at least
    lse = torch.logsumexp(x, dim=-1)
    picked = x.gather(1, safe.unsqueeze(1)).squeeze(1)
    return torch.where(valid, lse - picked, torch.zeros_like(lse)).sum(), x, lse


def _chunk_loss_and_grad(
    logits: torch.Tensor, safe: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunk's loss and its gradient (softmax - onehot on valid rows) in the logits' dtype. One expression,
    so that compiled on the GPU it is two passes over the bf16 logits instead of a chain of full-size fp32
    temporaries (~6 GB of traffic per 1k-token chunk of a 128k vocabulary)."""
    loss, x, lse = _chunk_stats(logits, safe, valid)
    columns = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    grad = (torch.exp(x - lse.unsqueeze(1)) - (columns == safe.unsqueeze(1)).to(x.dtype)) * valid.unsqueeze(1)
    return loss, grad.to(logits.dtype)


def _chunk_loss(logits: torch.Tensor, safe: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    return _chunk_stats(logits, safe, valid)[0]


_COMPILED: dict[str, Any] = {}


def _chunk_kernels(device: torch.device) -> tuple[Any, Any]:
    """Compiled on CUDA (fused elementwise + reductions), eager elsewhere (the CPU dev path and tests)."""
    if device.type != "cuda":
        return _chunk_loss_and_grad, _chunk_loss
    if not _COMPILED:
        _COMPILED["grad"] = torch.compile(_chunk_loss_and_grad, dynamic=True)
        _COMPILED["loss"] = torch.compile(_chunk_loss, dynamic=True)
    return _COMPILED["grad"], _COMPILED["loss"]


def default_chunk_size(vocab_size: int) -> int:
    """Tokens per chunk so one chunk's fp32 logits stay near 512 MiB."""
    return max(64, (1 << 27) // max(1, vocab_size))


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int,
    ) -> torch.Tensor:
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            compute = weight.to(hidden.dtype)
            acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32 softmax for bf16 inputs
            need_weight_grad = bool(ctx.needs_input_grad[1])
            grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
            grad_weight = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_weight_grad else None
            total = torch.zeros((), dtype=acc, device=hidden.device)
            loss_and_grad, loss_only = _chunk_kernels(hidden.device)
            for start in range(0, hidden.shape[0], chunk_size):
                h = hidden[start : start + chunk_size]
                t = targets[start : start + chunk_size]
                valid = t != IGNORE_INDEX
                safe = torch.where(valid, t, torch.zeros_like(t))
                logits = h @ compute.t()  # in the hidden dtype, as the matmul produces it
                if grad_hidden is None and grad_weight is None:
                    total += loss_only(logits, safe, valid)
                    continue
                chunk_loss, grad_low = loss_and_grad(logits, safe, valid)
                total += chunk_loss
                if grad_hidden is not None:
                    torch.mm(grad_low, compute, out=grad_hidden[start : start + chunk_size])
                if grad_weight is not None:
                    grad_weight += (grad_low.t() @ h).to(acc)
        ctx.save_for_backward(
            grad_hidden if grad_hidden is not None else torch.empty(0),
            grad_weight if grad_weight is not None else torch.empty(0),
        )
        ctx.weight_dtype = weight.dtype
        ctx.has_hidden = grad_hidden is not None
        ctx.has_weight = grad_weight is not None
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        out_hidden = grad_hidden * grad_output.to(grad_hidden.dtype) if ctx.has_hidden else None
        out_weight = (grad_weight * grad_output).to(ctx.weight_dtype) if ctx.has_weight else None
        return out_hidden, out_weight, None, None


def chunked_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_size: int | None = None
) -> torch.Tensor:
    """Sum (not mean) of token cross-entropies of `hidden @ weight.T` against `targets` (IGNORE_INDEX skipped).
    hidden: [tokens, d]; weight: [vocab, d]; targets: [tokens]. Summing lets gradient accumulation divide by
    the step's total target tokens."""
    size = chunk_size or default_chunk_size(weight.shape[0])
    result: torch.Tensor = _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, size)
    return result


def full_cross_entropy_sum(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Reference path: full logits in fp32 (what a plain causal-LM forward does)."""
    logits = (hidden @ weight.to(hidden.dtype).t()).to(torch.promote_types(hidden.dtype, torch.float32))
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
