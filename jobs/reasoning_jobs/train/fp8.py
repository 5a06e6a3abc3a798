"""FP8 matmuls on the frozen base weights of a LoRA model (`spec.training.fp8BaseWeights`).

LoRA never updates the base projections, so they can be quantized once to float8 e4m3 with one scale per
output row and dropped in bf16: half the weight memory, and the two frozen matmuls of every projection (the
forward and the input gradient) run on the FP8 tensor cores (`torch._scaled_mm`, Hopper/Ada), about twice
the bf16 rate. Activations and gradients are quantized per row (per token) on the fly. The LoRA branches, the
norms, attention and the loss stay in bf16; the adapters stay fp32.

The input gradient needs W in the reduction dimension, where the per-output-row weight scales cannot be
applied to the result; they are folded into the incoming gradient instead (dX = (dY·s) @ Wq), which is exact.
"""

from __future__ import annotations

from typing import Any

import torch

E4M3 = torch.float8_e4m3fn
E4M3_MAX = float(torch.finfo(E4M3).max)  # 448
_TINY = 1e-12


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e4m3 values and float32 dequantization scales, one per row (x ≈ q * scale)."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=_TINY)
    scale = amax / E4M3_MAX
    q = (x.float() / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return q, scale


class _FrozenFp8Matmul(torch.autograd.Function):
    """y = x @ Wᵀ with W frozen in e4m3; backward returns the input gradient only. Results come out in x's
    dtype (bf16 under the GPU's autocast; CUDA's row-wise scaled kernels produce bf16 only)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        xq, x_scale = quantize_rows(rows)
        out = torch._scaled_mm(xq, weight.t(), scale_a=x_scale, scale_b=weight_scale, out_dtype=x.dtype)
        ctx.save_for_backward(weight, weight_scale)
        ctx.input_dtype = x.dtype
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        weight, weight_scale = ctx.saved_tensors
        rows = grad.reshape(-1, grad.shape[-1]).float() * weight_scale  # fold the per-output-row weight scales
        gq, g_scale = quantize_rows(rows)
        # _scaled_mm wants its second operand column-major: the transpose of a row-major (in, out) copy.
        weight_t = weight.t().contiguous()
        ones = torch.ones((1, weight.shape[1]), dtype=torch.float32, device=grad.device)
        dx = torch._scaled_mm(gq, weight_t.t(), scale_a=g_scale, scale_b=ones, out_dtype=ctx.input_dtype)
        return dx.reshape(*grad.shape[:-1], weight.shape[1]), None, None


class Fp8FrozenLinear(torch.nn.Module):
    """Drop-in for a frozen `nn.Linear`. The quantized weight (and a bias, if any) are non-persistent buffers,
    so state dicts, PEFT adapters and checkpoints never contain them."""

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None
    in_features: int
    out_features: int

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        with torch.no_grad():
            q, scale = quantize_rows(linear.weight.detach())
        self.register_buffer("weight_fp8", q, persistent=False)
        self.register_buffer("weight_scale", scale.reshape(1, -1).contiguous(), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _FrozenFp8Matmul.apply(x, self.weight_fp8, self.weight_scale)
        return out if self.bias is None else out + self.bias.to(out.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3 row-scaled"


def fp8_supported(device: torch.device) -> bool:
    """FP8 tensor cores: compute capability 8.9 (Ada) or newer."""
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def quantize_frozen_projections(model: torch.nn.Module) -> int:
    """Swap the base layer of every LoRA-wrapped projection for its FP8 copy; returns how many were swapped.

    Only frozen linear layers under a PEFT LoRA wrapper are touched: embeddings, norms and the output head
    stay as they are. The bf16 weights are released as each layer is swapped.
    """
    swapped = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if not isinstance(base, torch.nn.Linear) or not hasattr(module, "lora_A"):
            continue
        if base.weight.requires_grad:
            raise ValueError("fp8 base weights need a frozen base (LoRA); this projection is trainable")
        if base.in_features % 16 or base.out_features % 16:
            continue  # _scaled_mm needs both dimensions in multiples of 16
        module.base_layer = Fp8FrozenLinear(base)
        swapped += 1
    return swapped
