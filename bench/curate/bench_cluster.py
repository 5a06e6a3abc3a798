"""Curation on a Ray cluster (spec.curation.cluster) against the single-pod job, by worker count, in one run.

    .venv/bin/python bench/curate/bench_cluster.py [--samples 630000] [--workers 1 2] [--pod-workers 2]

The cluster is what a KubeRay RayJob gives the driver, as processes on this machine (``ray.cluster_utils.
Cluster``, Ray's own multi-node-on-one-host harness): a head with no CPUs (``num-cpus 0``, as the operator's
RayJob sets it) and one raylet per worker, each with one CPU, each its own Ray node. The driver is the job's CLI
with the operator's stage config (``curation.cluster`` set), so it takes the cluster code path: it joins the
cluster (RAY_ADDRESS, as KubeRay's job supervisor sets it), skips the head for Curator's node setup, and its
workers get the job's environment through the runtime_env. The single-pod job is the same CLI on a private
local Ray of ``--pod-workers`` CPUs. Every output must be byte-identical to the single-pod job's.

Wall times are the driver's process start to exit; a cluster's own start (KubeRay's part: pods, ``ray start``)
is outside them and reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_curate import ROOT, run_pipeline

from reasoning_jobs.curate.pipeline import WORKER_ENV
from reasoning_jobs.datasets.nemotron_synthetic import generate


def _cluster_config(path: Path, data: Path, out: Path, workers: int) -> Path:
    """A stage config with what no flag sets: the cluster (its pods' resources do not matter here); the flags
    lay the rest over it, as for the single-pod job."""
    config = {"dataset": {"source": str(data)}, "outputDir": str(out), "curation": {"cluster": {"workers": workers}}}
    path.write_text(json.dumps(config))
    return path


def _on_cluster(data: Path, out: Path, workers: int, work: Path) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    started = time.perf_counter()
    # The raylets inherit this process's environment, as a pod's Ray processes inherit the pod's.
    os.environ.update(WORKER_ENV)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        up = time.perf_counter() - started
        config = _cluster_config(work / f"cluster-{workers}.json", data, out, workers)
        address = {"RAY_ADDRESS": cluster.address}
        wall, phases, summary = run_pipeline(data, out, workers, config=config, extra_env=address)
    finally:
        cluster.shutdown()
    return {"cluster_start_seconds": round(up, 1), "wall_seconds": round(wall, 1), "phases": phases, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=630_000, help="Generated samples (~70% in the selected files).")
    parser.add_argument("--work", type=Path, default=Path("/tmp/curate-cluster-bench"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray workers of each cluster run.")
    parser.add_argument("--pod-workers", type=int, default=2, help="The single-pod job's --n-workers.")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "out" / "curate" / "cluster.json")
    args = parser.parse_args()

    data = args.work / "data"
    if not (data / "SFT").is_dir():
        t = time.perf_counter()
        generate(data, samples=args.samples, seed=0, bad_fraction=0.1, long_chars=30_000)  # bench_curate.py's data
        print(f"generated {args.samples} samples in {time.perf_counter() - t:.0f}s", flush=True)
    results: dict[str, Any] = {"machine": f"{platform.node()} ({os.cpu_count()} CPUs)", "samples": args.samples}

    pod_out = args.work / "pod"
    wall, phases, summary = run_pipeline(data, pod_out, args.pod_workers)
    read = summary["samplesRead"]
    reference = (pod_out / "training.jsonl").read_bytes()
    results["single_pod"] = {
        "workers": args.pod_workers,
        "wall_seconds": round(wall, 1),
        "samples_per_s": round(read / wall),
        "pipeline_phase_samples_per_s": round(read / phases["pipeline"]),
        "phases": phases,
    }
    print(f"single pod, {args.pod_workers} workers: {json.dumps(results['single_pod'])}", flush=True)
    for workers in args.workers:
        out = args.work / f"cluster-{workers}"
        run = _on_cluster(data, out, workers, args.work)
        if run["summary"]["samplesRead"] != read or (out / "training.jsonl").read_bytes() != reference:
            raise SystemExit(f"the {workers}-worker cluster's output differs from the single-pod job's")
        entry = {
            "cluster_start_seconds": run["cluster_start_seconds"],
            "wall_seconds": run["wall_seconds"],
            "samples_per_s": round(read / run["wall_seconds"]),
            "ratio_vs_single_pod": round(wall / run["wall_seconds"], 2),
            "ratio_vs_single_pod_with_cluster_start": round(
                wall / (run["wall_seconds"] + run["cluster_start_seconds"]), 2
            ),
            "pipeline_phase_samples_per_s": round(read / run["phases"]["pipeline"]),
            "ratio_vs_single_pod_pipeline_phase": round(phases["pipeline"] / run["phases"]["pipeline"], 2),
            "phases": run["phases"],
            "output_identical_to_single_pod": True,
        }
        results[f"cluster_{workers}"] = entry
        print(f"cluster, {workers} workers: {json.dumps(entry)}", flush=True)
    results["samples_read"] = read
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
