"""Curation throughput: the NeMo Curator job (1 and 2 Ray workers) against a plain single-process Python
implementation of the same rules, on one generated dataset, in one run.

    .venv/bin/python bench/curate/bench_curate.py [--samples 300000] [--work /tmp/curate-bench]

The plain reference uses the same rule definitions (reasoning_jobs.curate.records), the same fastText model
and the same tokenizer, reads the files line by line, keeps the kept rows in memory and sorts them there.
Both write training.jsonl; the benchmark checks the two files are byte-identical before it reports a figure.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

# One core for the reference's native libraries too, as each Ray worker gets (see pipeline.WORKER_ENV).
os.environ.update({"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "jobs"), str(ROOT / "operator")]

import orjson  # noqa: E402

from reasoning_jobs.common.assets import offline_tokenizer_path  # noqa: E402
from reasoning_jobs.curate import records as rules  # noqa: E402
from reasoning_jobs.curate.language import bundled_lid_model_path  # noqa: E402
from reasoning_jobs.curate.sources import select_files  # noqa: E402
from reasoning_jobs.curate.stages import OUTPUT_COLUMNS  # noqa: E402
from reasoning_jobs.curate.tokenization import end_of_turn  # noqa: E402
from reasoning_jobs.datasets.nemotron_synthetic import generate  # noqa: E402

FILTERS = ["math_v1.1", "chat"]
MAX_PROMPT, MAX_COMPLETION = 4096, 8192
BLOCK_SIZE = 8 * 2**20


def plain_reference(root: Path, out: Path) -> dict[str, Any]:
    """The straightforward script: one process, one sample at a time, everything in memory."""
    import fasttext
    from transformers import AutoTokenizer

    model = fasttext.load_model(str(bundled_lid_model_path()))
    tokenizer = AutoTokenizer.from_pretrained(str(offline_tokenizer_path()))
    prefix, suffix = end_of_turn(tokenizer)
    dropped: Counter[str] = Counter()
    read = malformed = 0
    buckets: dict[str, list[tuple[int, bytes]]] = {"on": [], "off": []}
    for f in select_files(str(root), FILTERS):
        with Path(f.url).open("rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                read += 1
                try:
                    record = rules.parse_record(line)
                except rules.RecordError:
                    malformed += 1
                    continue
                if "Nano" not in record.used_in_training:
                    dropped[rules.USED_IN_TRAINING] += 1
                    continue
                violation = rules.think_violation(record.output, record.reasoning)
                if violation:
                    dropped[violation] += 1
                    continue
                if record.category == "math" and not rules.has_boxed_answer(rules.final_answer(record.output)):
                    dropped[rules.MISSING_BOXED] += 1
                    continue
                labels, scores = model.predict(rules.language_text(record.input, record.output), k=1)
                if labels[0] != "__label__en" or scores[0] < 0.5:
                    dropped[rules.LANGUAGE] += 1
                    continue
                prompt = tokenizer.apply_chat_template(
                    rules.conversation(record.input, record.reasoning), tokenize=False, add_generation_prompt=True
                )
                completion = prefix + record.output + suffix
                completion_tokens = len(tokenizer(completion, add_special_tokens=False)["input_ids"])
                if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) > MAX_PROMPT:
                    dropped[rules.PROMPT_TOO_LONG] += 1
                    continue
                if completion_tokens > MAX_COMPLETION:
                    dropped[rules.COMPLETION_TOO_LONG] += 1
                    continue
                row = {"input": prompt, "output": completion, **record.extra}
                row |= {"reasoning": record.reasoning, "category": record.category}
                row["used_in_training"] = list(record.used_in_training)
                buckets[record.reasoning].append((completion_tokens, orjson.dumps({c: row[c] for c in OUTPUT_COLUMNS})))
    for rows in buckets.values():
        rows.sort(key=lambda item: item[0])  # stable: input order breaks ties
    with out.open("wb") as handle:
        for on, off in itertools.zip_longest(buckets["on"], buckets["off"]):
            for item in (on, off):
                if item is not None:
                    handle.write(item[1] + b"\n")
    return {"read": read, "malformed": malformed, "dropped": dict(dropped)}


def stages_in_process(root: Path, out: Path) -> float:
    """The job's own NeMo Curator stages called one after another in this process (no Ray): what a Ray worker
    computes, without the engine around it. Returns the seconds of the stage chain (models preloaded)."""
    from nemo_curator.tasks import EmptyTask

    from reasoning_jobs.curate.language import cached_lang_id_filter
    from reasoning_jobs.curate.pipeline import _build_pipeline
    from reasoning_jobs.curate.sources import plan_blocks
    from reasoning_jobs.curate.tokenization import WorkerTokenizer, cached_tokenizer
    from reasoning_operator.api import CurationSpec, CurationStageConfig, DatasetSpec

    options = CurationStageConfig(
        dataset=DatasetSpec(source=str(root), filename_filters=FILTERS), output_dir=str(out),
        curation=CurationSpec(max_token_count=MAX_PROMPT, max_completion_token_count=MAX_COMPLETION),
        tokenizer=str(offline_tokenizer_path()), block_size=BLOCK_SIZE,
    )  # fmt: skip
    for directory in (out / "shards", out / ".keys"):
        directory.mkdir(parents=True, exist_ok=True)
    blocks = plan_blocks(select_files(str(root), FILTERS), BLOCK_SIZE)
    tokenizer = cached_tokenizer(options.tokenizer)
    eot = end_of_turn(tokenizer)
    worker_tokenizer = WorkerTokenizer.from_tokenizer(tokenizer, options.tokenizer)  # what the job's workers get
    worker_tokenizer.tools()
    model = str(bundled_lid_model_path())
    cached_lang_id_filter(model, 0.5, "en")
    partition, *stages = _build_pipeline(options, blocks, model, eot, worker_tokenizer).stages
    started = time.perf_counter()
    for task in partition.process(EmptyTask()):
        for stage in stages:
            task = stage.process(task)
    return time.perf_counter() - started


def ray_jemalloc() -> str:
    """The jemalloc Ray ships and preloads into its processes by default."""
    import ray

    return str(Path(ray.__file__).parent / "core" / "libjemalloc.so")


def allocator_env() -> dict[str, str]:
    """LD_PRELOAD of the allocator the job's Ray workers run on, for the in-process and floor rows."""
    from reasoning_jobs.curate.pipeline import allocator_env as job_allocator

    return {"LD_PRELOAD": job_allocator().get("RAY_JEMALLOC_LIB_PATH") or ray_jemalloc()}


def in_subprocess(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return proc.stdout.strip().splitlines()[-1]


def library_floors(data: Path, reference_seconds: float, names: list[str]) -> dict[str, Any]:
    """The floor (bench/curate/library_floor.py) with each allocator named, and the 2-worker ceiling it implies."""
    script = str(Path(__file__).with_name("library_floor.py"))
    allocators = {"libc": {}, "jemalloc": {"LD_PRELOAD": ray_jemalloc()}, "job": allocator_env()}
    floors: dict[str, Any] = {}
    for name, env in ((name, allocators[name]) for name in names):
        floor = json.loads(in_subprocess([script, "--data", str(data)], env))
        floor["ceiling_at_2_workers"] = round(2 * reference_seconds / floor["floor_s"], 2)
        floors[name] = floor
        print(f"library floor, {name}: {json.dumps(floor)}", flush=True)
    return floors


def run_pipeline(
    root: Path,
    out: Path,
    workers: int,
    counter: str = "auto",
    config: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> tuple[float, dict[str, float], dict[str, Any]]:
    """The job's CLI in a process of its own; ``config`` (a CurationStageConfig) under the same flags, for what
    no flag sets (a Ray cluster to join: bench_cluster.py)."""
    command = [
        sys.executable, "-m", "reasoning_operator.cli", "curate",
        "--input-dir", str(root), "--output-dir", str(out),
        "--filename-filter", ",".join(FILTERS), "--used-in-training", "Nano",
        "--tokenizer", str(offline_tokenizer_path()),
        "--max-token-count", str(MAX_PROMPT), "--max-completion-token-count", str(MAX_COMPLETION),
        "--n-workers", str(workers), "--block-size", str(BLOCK_SIZE), "--token-counter", counter,
    ]  # fmt: skip
    if config is not None:
        command += ["--config", str(config)]
    path = os.pathsep.join(filter(None, [str(ROOT / "jobs"), str(ROOT / "operator"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", **(extra_env or {})}
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    match = re.search(r"phase seconds: (\{.*\})", proc.stderr)
    phases = json.loads(match.group(1)) if match else {}
    match = re.search(r"stage seconds \(summed over workers\): (\{.*\})", proc.stderr)
    phases["stage_process_seconds"] = json.loads(match.group(1)) if match else {}
    return wall, phases, json.loads((out / "summary.json").read_text())


def run_round(args: argparse.Namespace, data: Path, reference_out: Path, first: bool) -> dict[str, Any]:
    """One reference run (and, in the first round, the floors and the in-process run), then every pipeline run,
    each checked byte-identical to the reference (or, with --no-reference, to the first pipeline's output)."""
    results: dict[str, Any] = {}
    reference_seconds, read = 0.0, 0
    if not args.no_reference:
        # A process of its own each round, as the pipeline's CLI is: every round pays the same start-up
        # (interpreter, imports, model and tokenizer loads), and the reference runs on the C library's malloc.
        t = time.perf_counter()
        reference = json.loads(in_subprocess([__file__, "--reference-only", str(data), str(reference_out)], {}))
        reference_seconds = time.perf_counter() - t
        read = reference["read"]
        rate = read / reference_seconds
        results["reference"] = {"seconds": round(reference_seconds, 1), "samples_per_s": round(rate)}
        print(f"plain reference: {read} samples in {reference_seconds:.1f}s ({rate:.0f}/s)", flush=True)
    if reference_seconds and first:
        if args.floors:
            results["library_floor"] = library_floors(data, reference_seconds, args.floors)
        if not args.skip_in_process:
            # In a process of its own, on the allocator the job's workers get.
            out, env = args.work / "in-process", allocator_env()
            seconds = float(in_subprocess([__file__, "--stages-in-process", str(data), str(out)], env))
            results["stages_in_process"] = {
                "seconds": round(seconds, 1),
                "samples_per_s": round(read / seconds),
                "ratio_vs_reference": round(reference_seconds / seconds, 2),
                "allocator": env["LD_PRELOAD"],
            }
            print(f"stages in process (no Ray): {json.dumps(results['stages_in_process'])}", flush=True)

    for counter, workers in ((c, w) for c in args.token_counters for w in args.workers):
        name = f"pipeline_{workers}" if counter == "auto" else f"pipeline_{workers}_{counter}"
        out = args.work / name.replace("_", "-")
        wall, phases, summary = run_pipeline(data, out, workers, counter)
        if not reference_out.exists():  # --no-reference: the first pipeline's output is the one to match
            read = summary["samplesRead"]
            reference_out.write_bytes((out / "training.jsonl").read_bytes())
        assert summary["samplesRead"] == read, (summary["samplesRead"], read)
        identical = (out / "training.jsonl").read_bytes() == reference_out.read_bytes()
        if not identical:
            raise SystemExit(f"{name} and reference outputs differ")
        pipeline_seconds = phases.get("pipeline", wall)
        results[name] = {
            "wall_seconds": round(wall, 1),
            "token_counter": summary.get("tokenCounter"),
            "phases": phases,
            "samples_per_s_end_to_end": round(read / wall),
            "samples_per_s_pipeline_phase": round(read / pipeline_seconds),
            "output_identical_to_reference": identical,
        }
        if reference_seconds:
            results[name].update(
                ratio_vs_reference_end_to_end=round(reference_seconds / wall, 2),
                ratio_vs_reference_pipeline_phase=round(reference_seconds / pipeline_seconds, 2),
            )
        else:
            results[name]["output_identical_to_first_pipeline"] = identical
        print(f"{name}: {json.dumps(results[name])}", flush=True)
        results["summary"] = summary
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=300_000, help="Generated samples (~70% in the selected files).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate-bench"))
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="Pipeline runs (none: skip them).")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "out" / "curate" / "results.json")
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="Scaling runs: skip the reference and the in-process run; every pipeline output must equal the first.",
    )
    parser.add_argument(
        "--token-counters",
        nargs="+",
        default=["auto"],
        choices=["auto", "tokenizers"],
        help="Run the pipelines with each token counter (tokenizers: the job's counter before session 7).",
    )
    parser.add_argument(
        "--floors",
        nargs="*",
        choices=["libc", "jemalloc", "job"],
        default=["libc", "jemalloc", "job"],
        help="Allocators to measure the library floor with (job: the one the job's workers get).",
    )
    parser.add_argument("--rounds", type=int, default=1, help="Repeat the reference and the pipelines this often.")
    parser.add_argument("--skip-in-process", action="store_true", help="Skip the in-process stages run.")
    parser.add_argument("--reference-only", nargs=2, type=Path, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--stages-in-process", nargs=2, type=Path, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_only:
        print(json.dumps(plain_reference(*args.reference_only)))
        return
    if args.stages_in_process:
        shutil.rmtree(args.stages_in_process[1], ignore_errors=True)
        print(stages_in_process(*args.stages_in_process))
        return

    data = args.work / "data"
    manifest = data / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text())["samples"] != args.samples:
        t = time.perf_counter()
        generate(data, samples=args.samples, seed=0, bad_fraction=0.1, long_chars=30_000)
        print(f"generated {args.samples} samples in {time.perf_counter() - t:.0f}s", flush=True)
    selected_bytes = sum(f.size for f in select_files(str(data), FILTERS))

    results: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_at_start": os.getloadavg(),
        "ld_preload": os.environ.get("LD_PRELOAD"),  # e.g. the allocator counterfactual in the README
        "selected_mb": round(selected_bytes / 1e6, 1),
    }
    reference_out = args.work / "reference.jsonl"
    reference_out.unlink(missing_ok=True)
    results["rounds"] = []
    for index in range(args.rounds):
        # Rounds repeat the reference and the pipelines back to back: a shared machine moves single figures by
        # tens of percent, so each round's ratios are against that round's own reference.
        measured = run_round(args, data, reference_out, first=index == 0)
        results["rounds"].append(measured)
        results["summary"] = measured.pop("summary", results.get("summary"))
    if args.rounds > 1:
        for workers in args.workers:
            ratios = [r.get(f"pipeline_{workers}", {}).get("ratio_vs_reference_end_to_end") for r in results["rounds"]]
            if None not in ratios:
                results[f"ratio_{workers}_workers_end_to_end_by_round"] = ratios
    results["load_average_at_end"] = os.getloadavg()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
