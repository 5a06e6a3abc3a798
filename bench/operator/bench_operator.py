"""Operator scale benchmark on the project's real control plane with kwok nodes (issue 24, parts 3 and 4).

For each operator source tree (`--variant NAME=REF`, a git ref extracted with `git archive`, or `current`
for this working tree) and each run count, on a fresh control plane:

1. the operator starts (`probe.py`: the real `reasoning operator`, with every reconcile timed);
2. N ReasoningRuns are created as fast as the client can (16 threads), all sharing one bound RWX claim;
3. measured: create→first Job latency per run (client clock at the create's return → the Job's ADDED
   event on a watch opened before), the time until every run is Curating, the operator's peak RSS
   (VmHWM), and the longest interval between two reconciles of one run from the first burst on (including
   the trailing one at the end), against 2 × resyncSeconds;
4. once nothing has changed for `--settle` seconds, the operator's CPU over `--idle` seconds.

Prints one Markdown row per (variant, runs) and writes everything to `--out` as JSON."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
from tests.support.controlplane import ControlPlane, build_binaries, free_port  # noqa: E402

GROUP, VERSION, PLURAL = "reasoning-operator.dev", "v1alpha1", "reasoningruns"
NAMESPACE = "bench"
CLAIM = "bench-data"


def _manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ReasoningRun",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"source": "/workspace/datasets/Llama-Nemotron-Post-Training-Dataset"},
            "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
            "storage": {"existingClaim": CLAIM},
        },
    }


def _source(ref: str, tmp: Path) -> Path:
    """The operator tree of REF: this checkout, a directory holding operator/ jobs/ crds/, or a git ref."""
    if ref == "current":
        return REPO
    if (Path(ref) / "operator").is_dir():  # extracted beforehand: a machine without the repo's history
        return Path(ref).resolve()
    out = tmp / f"src-{ref.replace('/', '_')}"
    out.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "operator", "jobs", "crds"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def _tree(pid: int) -> list[int]:
    """The process and its descendants (an operator with --shards is a supervisor and its shards)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            for task in Path(f"/proc/{pids[i]}/task").iterdir():
                pids += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
        i += 1
    return pids


def _status_kb(pid: int, field: str, name: str = "status") -> int:
    text = Path(f"/proc/{pid}/{name}").read_text()
    return int(next(line for line in text.splitlines() if line.startswith(field + ":")).split()[1])


def _proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, peak RSS bytes) of a process and its descendants: the peak is the sum of each
    one's VmHWM, which counts the pages a forked shard shares with its supervisor once per process (an
    upper bound; `_pss` is the fair share)."""
    cpu, hwm = 0.0, 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            hwm += _status_kb(p, "VmHWM") * 1024
        except (FileNotFoundError, StopIteration):
            pass
    return cpu, hwm


def _pss(pid: int) -> int:
    """Proportional set size of the process tree now: shared pages split between the processes sharing them,
    so the sum is what the tree holds (a container's memory use, less the page cache)."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(FileNotFoundError, StopIteration, PermissionError):
            total += _status_kb(p, "Pss", "smaps_rollup") * 1024
    return total


def _setup(plane: ControlPlane, src: Path) -> None:
    import yaml

    with plane.api_client() as api:
        ext = k8s.ApiextensionsV1Api(api)
        crd = yaml.safe_load((src / "crds" / "reasoningruns.yaml").read_text())
        ext.create_custom_resource_definition(crd)
        for _ in range(100):
            got = ext.read_custom_resource_definition(crd["metadata"]["name"])
            if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                break
            time.sleep(0.2)
        core = k8s.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        core.create_persistent_volume(
            {
                "metadata": {"name": "bench-pv"},
                "spec": {
                    "capacity": {"storage": "100Ti"},
                    "accessModes": ["ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": "/tmp/bench-pv"},
                },
            }
        )
        core.create_namespaced_persistent_volume_claim(
            NAMESPACE,
            {
                "metadata": {"name": CLAIM},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "resources": {"requests": {"storage": "100Ti"}},
                    "storageClassName": "",
                    "volumeName": "bench-pv",
                },
            },
        )
        for _ in range(20):  # the default ServiceAccount, which the Job controller's pods need
            if core.list_namespaced_service_account(NAMESPACE).items:
                break
            time.sleep(0.5)


class Watcher(threading.Thread):
    """First ADDED time of each Job, first Curating time of each run, and the last time anything changed."""

    def __init__(self, api: k8s.ApiClient, kind: str) -> None:
        super().__init__(daemon=True)
        self.api, self.kind = api, kind
        self.first: dict[str, float] = {}
        self.last_change = time.monotonic()
        self.ready = threading.Event()
        self.stop = False

    def run(self) -> None:
        if self.kind == "jobs":
            func: Any = k8s.BatchV1Api(self.api).list_namespaced_job
            args: tuple[Any, ...] = (NAMESPACE,)
        else:
            func = k8s.CustomObjectsApi(self.api).list_namespaced_custom_object
            args = (GROUP, VERSION, NAMESPACE, PLURAL)
        version = (
            func(*args)["metadata"]["resourceVersion"] if self.kind != "jobs" else func(*args).metadata.resource_version
        )
        self.ready.set()
        while not self.stop:
            w = watch.Watch()
            try:
                for event in w.stream(func, *args, resource_version=version, timeout_seconds=60, _request_timeout=90):
                    now = time.monotonic()
                    self.last_change = now
                    obj = event["raw_object"]
                    version = obj["metadata"]["resourceVersion"]
                    name = obj["metadata"]["name"]
                    if self.kind == "jobs":
                        run = obj["metadata"].get("labels", {}).get("reasoning-operator.dev/run")
                        if run and obj["metadata"]["labels"].get("reasoning-operator.dev/stage") == "curation":
                            self.first.setdefault(run, now)
                    elif (obj.get("status") or {}).get("phase") == "Curating":
                        self.first.setdefault(name, now)
                    if self.stop:
                        break
            except Exception as err:  # a dropped watch: resume from the last version
                if self.stop:
                    return
                print(f"watch {self.kind}: {err}", file=sys.stderr)
                time.sleep(0.5)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class PeakPss(threading.Thread):
    """The process tree's PSS, sampled every second: the peak of what the pod holds (VmHWM sums overcount)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, _pss(self.pid))
            time.sleep(1.0)


def _merged_stats(stats_path: Path) -> dict[str, Any]:
    """The supervisor's stats and each shard's (STATS.<pid>), as one."""
    merged: dict[str, Any] = {"now": 0.0, "runs": {}, "full": {}}
    for path in [stats_path, *stats_path.parent.glob(stats_path.name + ".*")]:
        if path.suffix == ".tmp" or not path.exists():
            continue
        data = json.loads(path.read_text())
        merged["now"] = max(merged["now"], data["now"])
        merged["runs"].update(data["runs"])
        merged["full"].update(data.get("full") or {})
    return merged


def bench_one(
    src: Path, runs: int, resync: float, settle: float, idle: float, workdir: Path, tag: str, shards: int | None
) -> dict[str, Any]:
    plane = ControlPlane(build_binaries(build=False))
    plane.start()
    op: subprocess.Popen[bytes] | None = None
    watchers: list[Watcher] = []
    try:
        _setup(plane, src)
        stats_path = workdir / f"stats-{tag}-{runs}.json"
        log_path = workdir / f"operator-{tag}-{runs}.log"
        metrics_port = free_port()
        env = dict(os.environ, PYTHONPATH="", KUBECONFIG=str(plane.kubeconfig))  # read at import by the client
        op = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "bench" / "operator" / "probe.py"),
                str(src),
                str(stats_path),
                "--",
                "--all-namespaces",
                "--kubeconfig",
                str(plane.kubeconfig),
                "--metrics-port",
                str(metrics_port),
                "--health-port",
                "0",
                "--resync-seconds",
                str(resync),
                *([] if shards is None else ["--shards", str(shards)]),
            ],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        api = plane.api_client()
        custom = k8s.CustomObjectsApi(api)
        # Warm up: the operator has started (imports, caches, watches) once it made a canary run's Job.
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _manifest("warmup"))
        batch = k8s.BatchV1Api(api)
        warm_deadline = time.monotonic() + 180
        while not batch.list_namespaced_job(NAMESPACE).items:
            if op.poll() is not None or time.monotonic() > warm_deadline:
                raise RuntimeError(f"the operator did not start: see {log_path}")
            time.sleep(0.5)
        time.sleep(2)
        jobs, phases = Watcher(api, "jobs"), Watcher(api, "runs")
        watchers += [jobs, phases]
        for w in (jobs, phases):
            w.start()
            w.ready.wait(30)
        created: dict[str, float] = {}
        names = [f"run-{i:04d}" for i in range(runs)]

        def create(name: str) -> None:
            custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, _manifest(name))
            created[name] = time.monotonic()

        spy = None
        if os.environ.get("BENCH_PYSPY"):  # a flame graph of the operator through the burst
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "-p",
                    str(op.pid),
                    "-d",
                    "60",
                    "-r",
                    "50",
                    "-f",
                    "speedscope",
                    "-o",
                    os.environ["BENCH_PYSPY"] + f"-{src.name}-{runs}.json",
                    "--nonblocking",
                    "--subprocesses",  # the shards too
                    "--gil",  # only the thread holding the GIL: where the CPU goes, not who waits on a socket
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        peak_pss = PeakPss(op.pid)
        peak_pss.start()
        cpu_start, _ = _proc_stat(op.pid)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(create, names))
        t_created = time.monotonic() - t0
        deadline = time.monotonic() + 300 + runs * 0.5
        while time.monotonic() < deadline and (len(jobs.first) < runs or len(phases.first) < runs):
            if op.poll() is not None:
                raise RuntimeError(f"the operator exited ({op.returncode}): see {log_path}")
            time.sleep(0.5)
        t_all_curating = (max(phases.first.values()) - t0) if len(phases.first) == runs else None
        cpu_burst = _proc_stat(op.pid)[0] - cpu_start
        if spy is not None:
            spy.wait()
        latencies = [jobs.first[n] - created[n] for n in names if n in jobs.first]
        # Settle: nothing changed on Jobs or runs for `settle` seconds, then measure idle CPU.
        settle_deadline = time.monotonic() + 600
        while time.monotonic() < settle_deadline:
            quiet = time.monotonic() - max(jobs.last_change, phases.last_change)
            if quiet >= settle:
                break
            time.sleep(1)
        cpu0, _ = _proc_stat(op.pid)
        w0 = time.monotonic()
        load0 = os.getloadavg()
        time.sleep(idle)
        cpu1, hwm = _proc_stat(op.pid)
        pss = _pss(op.pid)
        peak_pss.stop = True
        idle_share = (cpu1 - cpu0) / (time.monotonic() - w0)
        time.sleep(2)
        data = _merged_stats(stats_path)
        now = data["now"]
        gaps = {k: max(v[2], now - v[1]) for k, v in data["runs"].items() if not k.endswith("/warmup")}
        full = [n for k, n in (data.get("full") or {}).items() if not k.endswith("/warmup")]
        worst = max(gaps.values()) if gaps else None
        alive = op.poll() is None
        return {
            "runs": runs,
            "created_in_s": round(t_created, 1),
            "first_job": len(latencies),
            "p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "p99_s": round(_pct(latencies, 0.99), 2) if latencies else None,
            "max_s": round(max(latencies), 2) if latencies else None,
            "all_curating_s": round(t_all_curating, 1) if t_all_curating else None,
            "max_reconcile_gap_s": round(worst, 1) if worst is not None else None,
            "runs_over_2x_resync": sum(1 for g in gaps.values() if g > 2 * resync),
            "reconciled_runs": len(gaps),
            "burst_cpu_s": round(cpu_burst, 2),
            "burst_cpu_ms_per_run": round(1000 * cpu_burst / runs, 2),
            # through the burst and the idle window: what a new run costs in reconciles that are not memo hits
            "full_reconciles_per_run": round(sum(full) / len(full), 1) if full else None,
            "peak_rss_mb": round(hwm / 2**20),
            "pss_at_idle_mb": round(pss / 2**20),
            "peak_pss_mb": round(max(peak_pss.peak, pss) / 2**20),  # sampled every second from the burst on
            "processes": len(_tree(op.pid)),
            "idle_cpu_pct": round(100 * idle_share, 1),
            "load_avg_during_idle": [round(x, 1) for x in load0],
            "operator_alive": alive,
            "log": str(log_path),
        }
    finally:
        for w in watchers:
            w.stop = True
        if op is not None and op.poll() is None:
            op.terminate()
            try:
                op.wait(15)
            except subprocess.TimeoutExpired:
                op.kill()
        plane.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=REF[@SHARDS] (git ref, 'current' or a directory; @SHARDS passes --shards, which older trees lack)",
    )
    parser.add_argument("--runs", default="200", help="comma-separated run counts")
    parser.add_argument("--resync", type=float, default=10.0, help="--resync-seconds (the chart's default)")
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench-operator.json"))
    args = parser.parse_args()
    variants = [v.split("=", 1) for v in args.variant] or [["current", "current"]]
    results = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    print(f"operator logs and sources in {workdir}", file=sys.stderr)
    if True:
        sources: dict[str, Path] = {}
        for name, spec in variants:
            ref, _, count = spec.partition("@")
            shards = int(count) if count else None
            if ref not in sources:  # one extraction per ref, however many shard counts it runs with
                sources[ref] = _source(ref, workdir)
            for runs in (int(r) for r in args.runs.split(",")):
                row = {
                    "variant": name,
                    "ref": ref,
                    "shards": shards,
                    **bench_one(sources[ref], runs, args.resync, args.settle, args.idle, workdir, name, shards),
                }
                log = Path(row.pop("log"))
                row["operator_log_errors"] = sum(
                    "Traceback" in line for line in log.read_text(errors="replace").splitlines()
                )
                results.append(row)
                print(json.dumps(row), flush=True)
                args.out.write_text(json.dumps(results, indent=1))
    print(
        f"\n| variant | runs | p50 | p99 | max | all Curating | max gap (≤ {2 * args.resync:.0f} s) "
        "| peak RSS (sum) | peak PSS | PSS at idle | burst CPU | CPU per run | full reconciles per run | idle CPU |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['variant']} | {r['runs']} | {r['p50_s']} s | {r['p99_s']} s | {r['max_s']} s "
            f"| {r['all_curating_s']} s | {r['max_reconcile_gap_s']} s ({r['runs_over_2x_resync']} over) "
            f"| {r['peak_rss_mb']} MB | {r['peak_pss_mb']} MB | {r['pss_at_idle_mb']} MB | {r['burst_cpu_s']} s "
            f"| {r['burst_cpu_ms_per_run']} ms "
            f"| {r['full_reconciles_per_run']} | {r['idle_cpu_pct']}% |"
        )


if __name__ == "__main__":
    main()
