"""Cross-entropy over a large vocabulary without materialising the full logits.

The lm_head matmul, log-softmax and its gradient are done chunk by chunk inside one autograd function (the
idea behind Liger's fused linear cross-entropy): only the hidden-state gradient (and, for full fine-tuning,
the lm_head weight gradient) is kept, never the [tokens × 128k] fp32 logits and their gradient.
"""

from __future__ import annotations

from typing import Any

import torch

from .data import IGNORE_INDEX


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
            for start in range(0, hidden.shape[0], chunk_size):
                h = hidden[start : start + chunk_size]
                t = targets[start : start + chunk_size]
                valid = t != IGNORE_INDEX
                safe = torch.where(valid, t, torch.zeros_like(t))
                logits = (h @ compute.t()).to(acc)
                lse = torch.logsumexp(logits, dim=-1)
                picked = logits.gather(1, safe.unsqueeze(1)).squeeze(1)
                total += torch.where(valid, lse - picked, torch.zeros_like(lse)).sum()
                if grad_hidden is None and grad_weight is None:
                    continue
                # d(loss)/d(logits) = softmax - onehot, for valid rows only; reuse the logits buffer.
                grad = logits.sub_(lse.unsqueeze(1)).exp_()
                grad.scatter_add_(1, safe.unsqueeze(1), -torch.ones_like(picked).unsqueeze(1))
                grad.mul_(valid.unsqueeze(1).to(grad.dtype))
                grad_low = grad.to(hidden.dtype)
                if grad_hidden is not None:
                    grad_hidden[start : start + chunk_size] = grad_low @ compute
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
