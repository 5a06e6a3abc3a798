"""Numerics of the speed levers on the CPU: chunked cross-entropy equals the full-logits one, and a packed
micro batch (positions restarting per sample; SDPA block mask or the varlen path's per-sample reference)
gives the same loss as running each sample alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reasoning_jobs.train.attention import register_varlen_attention
from reasoning_jobs.train.batching import packed_micro_batch
from reasoning_jobs.train.data import IGNORE_INDEX, Sample
from reasoning_jobs.train.loss import chunked_cross_entropy_sum, full_cross_entropy_sum
from reasoning_jobs.train.memory import auto_recompute_layers
from reasoning_jobs.train.modeling import Levers, device_micro_batch, summed_loss


@pytest.mark.parametrize("weight_grad", [False, True])
def test_chunked_cross_entropy_matches_full(weight_grad: bool) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64, requires_grad=weight_grad)
    targets = torch.randint(0, 50, (37,))
    targets[::4] = IGNORE_INDEX
    chunked = chunked_cross_entropy_sum(hidden, weight, targets, chunk_size=8)
    grads = torch.autograd.grad(chunked * 0.5, [hidden, weight] if weight_grad else [hidden])
    full = full_cross_entropy_sum(hidden, weight, targets)
    expected = torch.autograd.grad(full * 0.5, [hidden, weight] if weight_grad else [hidden])
    torch.testing.assert_close(chunked, full.to(chunked.dtype), rtol=1e-6, atol=1e-6)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("attention", ["sdpa", "varlen"])
def test_packed_loss_equals_per_sample_loss(tiny_model: Path, attention: str) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float64, attn_implementation="sdpa")
    name = register_varlen_attention() if attention == "varlen" else "sdpa"
    model.config._attn_implementation = name
    levers = Levers(attention=name, chunked_loss=True)
    generator = torch.Generator().manual_seed(3)
    samples = [
        Sample(input_ids=torch.randint(5, 2000, (n,), generator=generator).tolist(), prompt_length=p, line=i)
        for i, (n, p) in enumerate([(11, 4), (23, 9), (7, 2)])
    ]
    with torch.no_grad():
        packed = summed_loss(model, device_micro_batch(packed_micro_batch(samples), torch.device("cpu")), levers)
        alone = sum(
            summed_loss(model, device_micro_batch(packed_micro_batch([s]), torch.device("cpu")), levers)
            for s in samples
        )
    torch.testing.assert_close(packed, alone, rtol=1e-9, atol=1e-9)


def test_recompute_planner_recomputes_only_what_memory_needs(tiny_model: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    big, small = 1 << 40, 7 * 1024**3
    assert auto_recompute_layers(model, 2, 8192, compiled=False, device_bytes=big) == 0
    needed = auto_recompute_layers(model, 2, 1 << 20, compiled=False, device_bytes=small)
    assert 1 <= needed <= 2
    assert auto_recompute_layers(model, 2, 1 << 20, compiled=True, device_bytes=small) <= needed


def test_recompute_planner_counts_the_dropped_inputs_that_lora_dropout_keeps() -> None:
    """Llama-3.1-8B shapes: without dropout a layer keeps 5·d + ffn fewer elements per token, so a 16k-token
    micro batch on an 80 GB card needs fewer recomputed layers (bench/train/README.md, run 10)."""
    from reasoning_jobs.train.memory import activation_bytes_per_layer

    d, ffn, tokens = 4096, 14336, 16384
    with_dropout = activation_bytes_per_layer(d, ffn, tokens, compiled=True)
    without = activation_bytes_per_layer(d, ffn, tokens, compiled=True, dropout=False)
    assert with_dropout - without == tokens * 2 * (5 * d + ffn)
    assert without == tokens * 2 * (7 * d + 3 * ffn)

    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=d, intermediate_size=ffn, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256)  # fmt: skip
    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)  # sizes only: no memory is allocated
    model.requires_grad_(False)  # a frozen bf16 base, as under LoRA (the adapters' few MB left out)
    card = 80 * 1024**3
    plan = {flag: auto_recompute_layers(model, 32, tokens, True, card, dropout=flag) for flag in (True, False)}
    assert 0 < plan[False] < plan[True] <= 32


def test_recompute_planner_prefers_cheap_recompute_to_whole_layers_when_compiled_without_dropout() -> None:
    """Llama-3.1-8B shapes, 16k tokens, 80 GB: compiled and without dropout, inductor's activation memory budget
    (cheap elementwise recompute: 2·(6·d + 2·ffn) bytes a token, run 14) fits every layer, so no whole layer is
    recomputed; with dropout, or eager, the plan stays whole layers at the default budget."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasoning_jobs.train.memory import (
        CHEAP_RECOMPUTE_BUDGET,
        RecomputePlan,
        activation_bytes_per_layer,
        plan_recompute,
    )

    d, ffn, tokens = 4096, 14336, 16384
    cheap = activation_bytes_per_layer(d, ffn, tokens, compiled=True, dropout=False, cheap_recompute=True)
    assert cheap == tokens * 2 * (6 * d + 2 * ffn)
    config = LlamaConfig(hidden_size=d, intermediate_size=ffn, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8, vocab_size=128256)  # fmt: skip
    with torch.device("meta"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.requires_grad_(False)
    card = 80 * 1024**3
    assert plan_recompute(model, 32, tokens, True, card, dropout=False) == RecomputePlan(0, CHEAP_RECOMPUTE_BUDGET)
    with_dropout = plan_recompute(model, 32, tokens, True, card, dropout=True)
    assert with_dropout.activation_budget == 1.0 and with_dropout.layers > 0
    eager = plan_recompute(model, 32, tokens, False, card, dropout=False)
    assert eager.activation_budget == 1.0 and eager.layers > 0
    # Where even the cheap recompute does not fit, it is kept and fewer whole layers are recomputed.
    long = plan_recompute(model, 32, 2 * tokens, True, card, dropout=False)
    whole_only = auto_recompute_layers(model, 32, 2 * tokens, True, card, dropout=False)
    assert long.activation_budget == CHEAP_RECOMPUTE_BUDGET and 0 < long.layers < whole_only
    # Fits at the default budget: nothing is recomputed at all.
    assert plan_recompute(model, 32, 4096, True, card, dropout=False) == RecomputePlan(0)


def test_compiled_layers_get_the_planned_activation_budget(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._functorch.config as functorch_config
    from transformers import AutoModelForCausalLM

    from reasoning_jobs.train.modeling import apply_levers

    monkeypatch.setattr(functorch_config, "activation_memory_budget", 1.0)  # restored after the test
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    apply_levers(model, Levers(compile=True, activation_budget=0.8))  # compiles lazily: nothing runs here
    assert functorch_config.activation_memory_budget == 0.8
    with pytest.raises(ValueError, match="activation_budget"):
        apply_levers(model, Levers(activation_budget=1.5))


def test_memory_planner_counts_tied_weights_once(tiny_model: Path) -> None:
    """The tiny Llama ties its input and output embeddings: one tensor, counted once."""
    from transformers import AutoModelForCausalLM

    from reasoning_jobs.train.memory import tensor_bytes

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    embedding, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert embedding.data_ptr() == head.data_ptr()
    assert tensor_bytes([*model.parameters(), head]) == sum(p.numel() * p.element_size() for p in model.parameters())


def test_fa4_packed_call_keeps_the_layout_and_samples_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flash-Attention 4 needs a Hopper GPU, which CI has not: a stand-in with FA4's documented interface
    ([tokens, heads, dim] in, (out, lse) out, GQA as-is) checks what the job hands it and how it reads the result;
    the kernel itself is compared with PyTorch's on the H100 (bench/train/attention_check.py)."""
    from reasoning_jobs.train import attention

    torch.manual_seed(0)
    lengths = [5, 9, 2]
    cu = torch.tensor([0, 5, 14, 16], dtype=torch.int32)
    q, k, v = torch.randn(16, 4, 8), torch.randn(16, 2, 8), torch.randn(16, 2, 8)
    calls: list[dict[str, object]] = []

    def fake_fa4(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: object) -> tuple[torch.Tensor, None]:
        calls.append(kwargs)
        bhsd = [t.transpose(0, 1).unsqueeze(0) for t in (q, k, v)]
        cu_q = kwargs["cu_seqlens_q"]
        assert isinstance(cu_q, torch.Tensor)
        out = attention._reference_varlen(*bhsd, cu_q, kwargs["softmax_scale"])  # type: ignore[arg-type]
        return out.squeeze(0), None

    out = attention.fa4_packed_attention(fake_fa4, q, k, v, cu, max(lengths), 0.3)
    assert calls[0]["causal"] is True and calls[0]["max_seqlen_q"] == 9 and calls[0]["cu_seqlens_k"] is cu
    assert out.shape == (16, 4, 8)
    for (a, b), n in zip([(0, 5), (5, 14), (14, 16)], lengths, strict=True):
        alone = torch.nn.functional.scaled_dot_product_attention(
            q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), is_causal=True, scale=0.3,
            enable_gqa=True,
        )  # fmt: skip
        torch.testing.assert_close(out[a:b], alone.transpose(0, 1), msg=f"sample of {n} tokens")
    monkeypatch.setattr(attention, "PREFER_FA4", True)
    assert attention.packed_kernel(torch.device("cpu")) == "pytorch"  # FA4 only on a Hopper GPU


def test_equal_length_samples_run_as_a_dense_batch_with_the_same_result() -> None:
    """Full-length samples packed into one row (two 8k samples under a 16k maxSeqLength) go through the dense
    causal kernels as a batch of rows: the same attention as one causal pass per sample, GQA included. Rows of
    unequal samples are not taken for it."""
    from reasoning_jobs.train import attention

    torch.manual_seed(0)
    # HF's layout: [batch, seq, heads, dim] projections seen as [batch, heads, seq, dim] (strided, not copied).
    q, k, v = (torch.randn(1, 12, h, 8).transpose(1, 2) for h in (4, 2, 2))
    equal = torch.tensor([0, 4, 8, 12], dtype=torch.int32)
    assert attention.equal_samples(1, 12, equal, 4) == 3
    assert attention.equal_samples(1, 12, torch.tensor([0, 12], dtype=torch.int32), 12) == 1
    assert attention.equal_samples(1, 12, torch.tensor([0, 5, 12], dtype=torch.int32), 7) == 0
    assert attention.equal_samples(2, 12, equal, 4) == 0
    out = attention.dense_causal(q, k, v, 3, 0.3)
    torch.testing.assert_close(out, attention._reference_varlen(q, k, v, equal, 0.3))
    assert out.shape == (1, 12, 4, 8)
