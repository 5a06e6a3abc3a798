"""Evaluation client throughput against a real Triton server (PyTriton) whose model takes a fixed time per
request. The server's capacity is instances / latency requests per second; the evaluation client (the real
`run_requests` path: queue, workers, tritonclient.http.aio, answer extraction, scoring) must reach >= 95% of
it at concurrency 64. Baseline, measured in the same run against the same server: 64 threads of the
synchronous tritonclient.http client, each with its own connection.

    .venv/bin/python bench/evaluate/bench_client_throughput.py --latency 0.25 --instances 16 --requests 1280
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "jobs")]

from reasoning_jobs.evaluate.benchmarks import Question  # noqa: E402
from reasoning_jobs.evaluate.runner import run_requests, score  # noqa: E402
from reasoning_jobs.serve.contract import SamplingParameters  # noqa: E402
from reasoning_jobs.serve.pytriton_backend import Ports, ServedModel, one_by_one, start_triton  # noqa: E402
from reasoning_operator.api import EvaluationSpec, EvaluationStageConfig  # noqa: E402


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


def sleeping_model(latency: float) -> ServedModel:
    def answer(user: str, system: str | None, params: SamplingParameters) -> tuple[str, int, str]:
        time.sleep(latency)
        return "<think>short</think>\nAnswer: A", 8, "stop"

    return ServedModel("trained", one_by_one(answer))


def questions(n: int) -> dict[str, list[Question]]:
    return {"mmlu": [Question("mmlu", f"q{i}", f"Question {i}?", ("a", "b", "c", "d"), "A") for i in range(n)]}


def run_client(url: str, concurrency: int, n: int) -> tuple[float, int]:
    config = EvaluationStageConfig(
        evaluation=EvaluationSpec(benchmarks=["mmlu"], modes=["on"], concurrency=concurrency, max_tokens=16),
        server_url=url,
        models=["trained"],
        output_dir="/tmp/unused",
    )
    started = time.perf_counter()
    records = asyncio.run(run_requests(config, questions(n), progress=False))
    elapsed = time.perf_counter() - started
    correct = score(records)[0].correct
    return elapsed, correct


def run_threads(url: str, concurrency: int, n: int) -> float:
    import numpy as np
    import tritonclient.http as httpclient

    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpclient.InferenceServerClient(url.removeprefix("http://"))
        tensor = httpclient.InferInput("text_input", [1, 1], "BYTES")  # batched models: a batch of one
        tensor.set_data_from_numpy(np.array([[f"Question {i}?".encode()]], dtype=object))
        local.client.infer("trained", [tensor])

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the model takes per request")
    parser.add_argument("--instances", type=int, default=16, help="model instances = requests served at once")
    parser.add_argument("--concurrency", type=int, default=64, help="client concurrency")
    parser.add_argument("--requests", type=int, default=1280)
    parser.add_argument("--warmup", type=int, default=128)
    parser.add_argument("--json-out", type=Path, default=ROOT / "bench" / "out" / "evaluate_throughput.json")
    args = parser.parse_args()

    ports = Ports(http=free_port(), grpc=free_port(), metrics=free_port())
    triton = start_triton([sleeping_model(args.latency)], ports, host="127.0.0.1", instances=args.instances)
    url = f"http://127.0.0.1:{ports.http}"
    capacity = args.instances / args.latency
    try:
        run_client(url, args.concurrency, args.warmup)
        baseline_seconds = run_threads(url, args.concurrency, args.requests)
        client_seconds, correct = run_client(url, args.concurrency, args.requests)
    finally:
        triton.stop()
    assert correct == args.requests, f"only {correct}/{args.requests} answers scored correct"
    baseline = args.requests / baseline_seconds
    client = args.requests / client_seconds
    result: dict[str, Any] = {
        "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.system()}",
        "latency_s": args.latency,
        "instances": args.instances,
        "client_concurrency": args.concurrency,
        "requests": args.requests,
        "capacity_rps": round(capacity, 1),
        "baseline_threads_rps": round(baseline, 1),
        "evaluation_client_rps": round(client, 1),
        "client_vs_capacity": round(client / capacity, 4),
        "client_vs_baseline": round(client / baseline, 4),
        "load_average": os.getloadavg(),
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if client / capacity < 0.95:
        print(f"FAIL: client reached {client / capacity:.1%} of capacity (< 95%)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
