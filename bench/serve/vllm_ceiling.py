"""The vLLM engine's decode ceiling on Llama-3.1-8B's shape with random (dummy) weights, offline (no Triton).

128 prompt tokens in, OUT tokens out with EOS ignored, N prompts at once: the shape of the published TensorRT-LLM
figure in shared/reference-figures.md. Token ids are sent directly (no tokenizer), so the vocabulary is Llama's.
The engine only, as an upper bound for the vllm backend (which adds Triton and tritonclient in front of it):

    PYTHONPATH=<vLLM and its needs> VLLM_USE_FLASHINFER_SAMPLER=0 python3 bench/serve/vllm_ceiling.py OUT 256 4096

(on the lent H200 with the folders of bench/outcome/pack_carry.py; README.md has the figure).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "torch_dtype": "bfloat16",
    "tie_word_embeddings": False,
    "bos_token_id": 128000,
    "eos_token_id": 128009,
}


def main() -> None:
    out_dir = Path(sys.argv[1])
    prompts, out_len = int(sys.argv[2]), int(sys.argv[3])
    model = Path("/tmp/llama-3.1-8b-shape")
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text(json.dumps(CONFIG))
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    started = time.perf_counter()
    llm = LLM(
        model=str(model),
        load_format="dummy",
        skip_tokenizer_init=True,
        dtype="bfloat16",
        max_model_len=128 + out_len + 64,
        gpu_memory_utilization=0.9,
        seed=0,
    )
    ready = time.perf_counter() - started
    ids = [[(7 * i + 13 * j) % 120000 + 1000 for j in range(128)] for i in range(prompts)]
    params = SamplingParams(max_tokens=out_len, min_tokens=out_len, ignore_eos=True, temperature=0.0, detokenize=False)
    llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids[:8]], SamplingParams(max_tokens=16, detokenize=False))
    t0 = time.perf_counter()
    outputs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids], params)
    seconds = time.perf_counter() - t0
    generated = sum(len(o.outputs[0].token_ids) for o in outputs)
    import torch

    row = {
        "device": torch.cuda.get_device_name(0),
        "vllm": __import__("vllm").__version__,
        "torch": torch.__version__,
        "shape": "llama-3.1-8b (dummy weights, bf16)",
        "prompts": prompts,
        "input_len": 128,
        "output_len": out_len,
        "engine_ready_seconds": round(ready, 1),
        "generate_seconds": round(seconds, 2),
        "output_tokens": generated,
        "output_tokens_per_second": round(generated / seconds, 1),
        "env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")},
    }
    print(json.dumps(row, indent=1))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vllm-ceiling.json").write_text(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
