"""Peak memory of one curation worker against the block size: the job's stage chain run on one block in a fresh
process that holds what a Ray worker holds (the stages, fastText, the tokenizer as `WorkerTokenizer`; no torch).

    .venv/bin/python bench/curate/bench_memory.py --data /tmp/curate-bench/data   # after bench_curate.py

For each block size it reports the process's resident memory once everything is loaded (a first tiny block
processed) and its peak after one full block, so the difference is what one block costs.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "jobs"), str(ROOT / "operator")]
FILTERS = ["math_v1.1", "chat"]
SIZES_MIB = (8, 64)


def rss_mib() -> float:
    """Current resident set (Linux /proc), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(payload: Path) -> None:
    """One block through the chain, like a Ray task: load, warm up on a small block, then the measured block."""
    from nemo_curator.tasks import EmptyTask

    from reasoning_jobs.curate.stages import BlockPartitionStage

    job = pickle.loads(payload.read_bytes())
    chain = job["chain"]
    small, block = BlockPartitionStage(blocks=[job["small"], job["block"]]).process(EmptyTask())

    def run(task: Any) -> None:
        chain.process(task)

    run(small)  # loads fastText and the tokenizer tools, as a worker's first task does
    loaded = rss_mib()
    # The block's peak is sampled from /proc while it runs: ru_maxrss never falls, and on Linux it even keeps
    # the parent's high-water mark across fork+exec (the driver here has torch loaded), so it says nothing.
    peaks = [loaded]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peaks.append(rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    run(block)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    print(json.dumps({"loaded_mib": round(loaded, 1), "peak_mib": round(max(peaks), 1),
                      "seconds": round(seconds, 1)}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/curate-bench/data"))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return

    from reasoning_jobs.common.assets import offline_tokenizer_path
    from reasoning_jobs.curate.language import bundled_lid_model_path
    from reasoning_jobs.curate.pipeline import _build_pipeline
    from reasoning_jobs.curate.sources import plan_blocks, select_files
    from reasoning_jobs.curate.tokenization import WorkerTokenizer, cached_tokenizer, end_of_turn
    from reasoning_operator.api import CurationSpec, CurationStageConfig, DatasetSpec

    tokenizer = cached_tokenizer(str(offline_tokenizer_path()))
    eot = end_of_turn(tokenizer)
    worker_tokenizer = WorkerTokenizer.from_tokenizer(tokenizer, str(offline_tokenizer_path()))
    files = select_files(str(args.data), FILTERS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in SIZES_MIB:
            out = Path(tmp) / f"out-{size}"
            for directory in (out / "shards", out / ".keys"):
                directory.mkdir(parents=True, exist_ok=True)
            options = CurationStageConfig(
                dataset=DatasetSpec(source=str(args.data), filename_filters=FILTERS), output_dir=str(out),
                curation=CurationSpec(max_token_count=4096, max_completion_token_count=8192),
                tokenizer=str(offline_tokenizer_path()), block_size=size * 2**20,
            )  # fmt: skip
            blocks = plan_blocks(files, options.block_size)
            full = max(blocks, key=lambda b: b.end - b.start)
            small = plan_blocks(files, 2**16)[0]
            chain = _build_pipeline(options, blocks, str(bundled_lid_model_path()), eot, worker_tokenizer).stages[1]
            payload = Path(tmp) / f"job-{size}.pkl"
            payload.write_bytes(pickle.dumps({"chain": chain, "small": small, "block": full}))
            done = subprocess.run(
                [sys.executable, __file__, "--worker", str(payload)], capture_output=True, text=True, check=True
            )
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row |= {"block_mib": size, "block_bytes": full.end - full.start}
            row["block_cost_mib"] = round(row["peak_mib"] - row["loaded_mib"], 1)
            results.append(row)
            print(json.dumps(row), flush=True)
    target = ROOT / "bench" / "out" / "curate" / "memory.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
