"""A tiny Llama-architecture model (random weights) saved with the offline tokenizer, so tests and the
local quickstart can point `spec.model.name` at a directory and train without any hub download."""

from __future__ import annotations

from pathlib import Path

from reasoning_jobs.common.assets import offline_tokenizer_path


def build_tiny_llama(
    target: str | Path,
    hidden_size: int = 192,
    num_layers: int = 3,
    num_heads: int = 6,
    num_kv_heads: int = 2,
    intermediate_size: int = 512,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> Path:
    """Build from `LlamaConfig` (vocab = the offline tokenizer's), save model + tokenizer in HF format."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(offline_tokenizer_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(target)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
