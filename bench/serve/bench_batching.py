"""The pytriton backend's chat model: requests answered one at a time (how it served before dynamic batching)
against the same requests answered as one left-padded batch (`ChatModel.generate_batch`, what Triton's dynamic
batcher now hands it), measured in one run on one device.

Random weights in SmolLM2-135M-Instruct's shape (hidden 576, 30 layers, 9 heads / 3 KV heads, FFN 1536) with the
project's offline tokenizer (a smaller vocabulary than SmolLM2's 49,152), float32 as the serve job loads it.
Random weights rarely end a turn, so every answer runs to max_tokens and both sides generate the same tokens.

    python bench/serve/bench_batching.py --out bench/serve/results/batching-<device>.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=64, help="requests answered as one batch")
    parser.add_argument("--alone", type=int, default=8, help="of them, answered one at a time (the baseline)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--small", action="store_true", help="a tiny model (a CPU smoke run of this script)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from reasoning_jobs.serve.chat_model import ChatModel, serving_device
    from reasoning_jobs.serve.contract import SamplingParameters
    from reasoning_jobs.train.tiny_model import build_tiny_llama

    device = serving_device(1, torch.cuda.is_available())
    shape = (
        {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 128}
        if args.small
        else {"hidden_size": 576, "num_layers": 30, "num_heads": 9, "num_kv_heads": 3, "intermediate_size": 1536}
    )

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with tempfile.TemporaryDirectory() as scratch:
        chat = ChatModel(str(build_tiny_llama(Path(scratch) / "model", **shape)), device=device)
        params = SamplingParameters(max_tokens=args.max_tokens)
        prompts = [f"Question {i}: what is {i} * {i + 7}?" for i in range(args.requests)]
        requests = [(prompt, "detailed thinking on", params) for prompt in prompts]
        chat.generate_batch(requests[:2], use_adapter=False)  # warm-up: kernels, allocator
        sync()
        started = time.perf_counter()
        alone = [chat.generate(*request, use_adapter=False) for request in requests[: args.alone]]
        sync()
        alone_s = time.perf_counter() - started
        started = time.perf_counter()
        together = chat.generate_batch(requests, use_adapter=False)
        sync()
        batch_s = time.perf_counter() - started
    alone_tokens = sum(a.num_output_tokens for a in alone)
    batch_tokens = sum(a.num_output_tokens for a in together)
    same = sum(a.text == b.text for a, b in zip(alone, together, strict=False))
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "shape": shape,
        "max_tokens": args.max_tokens,
        "one_at_a_time": {"requests": args.alone, "seconds": round(alone_s, 2), "tokens": alone_tokens,
                          "tokens_per_s": round(alone_tokens / alone_s, 1)},
        "one_batch": {"requests": args.requests, "seconds": round(batch_s, 2), "tokens": batch_tokens,
                      "tokens_per_s": round(batch_tokens / batch_s, 1)},
        "speedup": round((batch_tokens / batch_s) / (alone_tokens / alone_s), 1),
        "same_answer_alone_and_batched": f"{same}/{len(alone)}",
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
