"""The trained model served by the project's serve job and scored by its evaluation job, on the GPU.

The path is the CPU test's (tests/jobs/local/test_smollm2_pipeline.py): stage configs from
examples/smollm2-reasoning.yaml, `reasoning serve` (PyTriton backend: base + the trained LoRA adapter, here
with `serving.gpus: 1`) as its own process behind `local.processes.Server`, then `reasoning evaluate` through
tritonclient. The same questions are then asked directly (direct_eval.py, batched) so the figures can be set
beside the direct ones: greedy decoding should make the transport change next to nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
MANIFEST = HERE.parents[1] / "examples" / "smollm2-reasoning.yaml"
MODES = ["on", "off"]


def _job(command: str, config: Path, log: Path) -> float:
    """One stage job as its own process; returns its wall seconds."""
    began = time.monotonic()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "reasoning_operator.cli", command, "--config", str(config)],
            stdout=handle, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if done.returncode != 0:
        sys.stdout.write(log.read_text(encoding="utf-8")[-4000:])
        raise SystemExit(f"reasoning {command} failed with {done.returncode}; log {log}")
    return round(time.monotonic() - began, 1)


def _configs(model: str, eval_dir: Path, work: Path, limit: int, benchmarks: list[str], port: int) -> Any:
    from reasoning_jobs.local.manifest import load_manifest
    from reasoning_operator.api import stage_configs

    overrides = [
        "serving.gpus=1",
        f"evaluation.sampleLimit={limit}",
        f"evaluation.benchmarks=[{','.join(benchmarks)}]",
    ]
    spec = load_manifest(MANIFEST, overrides).spec.model_copy(deep=True)
    spec.model.name = model
    spec.evaluation.data_dir = str(eval_dir)
    return stage_configs(spec, str(work / "run"), f"http://127.0.0.1:{port}")


def agreement(served: list[dict[str, Any]], direct: dict[str, str | None]) -> dict[str, Any]:
    """Per (benchmark, model, mode): how many questions got the same extracted answer both ways."""
    cells: dict[str, list[int]] = {}
    for record in served:
        cell = f"{record['benchmark']}/{record['model']}/{record['mode']}"
        same = direct.get(f"{cell}/{record['question_id']}", "missing") == record["extracted"]
        counts = cells.setdefault(cell, [0, 0])
        counts[0] += int(same)
        counts[1] += 1
    return {cell: {"same": same, "n": n} for cell, (same, n) in sorted(cells.items())}


def serve_and_evaluate(
    model: str, trained: Path, eval_dir: Path, work: Path, limit: int, benchmarks: list[str], port: int = 18400
) -> dict[str, Any]:
    """Serve base + `trained`/adapter, evaluate through Triton, then directly; every stage timed."""
    from reasoning_jobs.local.processes import Server

    work.mkdir(parents=True, exist_ok=True)
    configs = _configs(model, eval_dir, work, limit, benchmarks, port)
    serving = configs.serving.model_copy(
        update={
            "adapter_path": str(trained / "adapter"),
            "http_port": port, "grpc_port": port + 1, "metrics_port": port + 2, "openai_port": port + 3,
        }
    )  # fmt: skip
    serving_yaml = work / "serving.yaml"
    serving_yaml.write_text(yaml.safe_dump(serving.to_wire(), sort_keys=False), encoding="utf-8")
    evaluation_yaml = work / "evaluation.yaml"
    evaluation_yaml.write_text(yaml.safe_dump(configs.evaluation.to_wire(), sort_keys=False), encoding="utf-8")
    server = Server(
        serving_yaml,
        work / "serving.log",
        f"http://127.0.0.1:{port}/v2/models/{serving.adapter_model_name}/ready",
        extra=["--host", "127.0.0.1"],
    )
    stages: dict[str, float] = {}
    began = time.monotonic()
    try:
        server.start(timeout=300)
        stages["serve_start_seconds"] = round(time.monotonic() - began, 1)
        print("serving after", stages["serve_start_seconds"], "s", flush=True)
        stages["evaluate_seconds"] = _job("evaluate", evaluation_yaml, work / "evaluate.log")
    finally:
        server.stop()
    served = json.loads((Path(configs.evaluation.output_dir) / "results.json").read_text(encoding="utf-8"))
    serving_log = (work / "serving.log").read_text(encoding="utf-8", errors="replace")
    device_line = next((line for line in serving_log.splitlines() if line.startswith("loading ")), "")

    from direct_eval import Generator, evaluate

    began = time.monotonic()
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU for the rehearsal, as the server falls back
    generator = Generator(model, {"trained": str(trained / "adapter")}, device)
    direct = evaluate(
        generator, {"trained": "trained", "base": None}, eval_dir, benchmarks, MODES, serving_max_tokens(configs),
        limit=limit, batch=400,
    )  # fmt: skip
    stages["direct_eval_seconds"] = round(time.monotonic() - began, 1)
    return {
        "stages": stages,
        "serving": {"log_first_line": device_line, "config": serving.to_wire()},
        "evaluation": configs.evaluation.to_wire(),
        "served_scores": served["scores"],
        "served_records": served["records"],
        "direct_scores": direct["scores"],
        "agreement": agreement(served["records"], direct["answers"]),
    }


def serving_max_tokens(configs: Any) -> int:
    """The evaluation job's token budget, so the direct run decodes exactly as far."""
    return int(configs.evaluation.evaluation.max_tokens)
