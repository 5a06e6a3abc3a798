"""Fixtures for the serving tests: free loopback ports and a tiny Llama (+ LoRA adapter) built on the spot."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from pathlib import Path

import pytest


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range. A port bound to 0 comes from that range, and so do the
    sockets the server's own processes bind to 0 later (vLLM's engine took a Triton port that way once, and
    every start attempt then failed with "already in use")."""
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(20000, floor)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in 20000..{floor}")


@pytest.fixture(scope="session")
def ports() -> Callable[[], int]:
    """Distinct free ports (never the same one twice in a session)."""
    handed: set[int] = set()

    def next_port() -> int:
        while True:
            port = free_port()
            if port not in handed:
                handed.add(port)
                return port

    return next_port


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A random 2-layer Llama with the offline tokenizer saved beside it, and a LoRA adapter with B != 0
    (init_lora_weights=False), so the adapter changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from reasoning_jobs.common.assets import offline_tokenizer_path

    root = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(offline_tokenizer_path())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model_dir = root / "model"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    lora = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, lora)
    adapter_dir = root / "adapter"
    peft_model.save_pretrained(str(adapter_dir))
    return model_dir, adapter_dir
