"""A whole ReasoningRun on the real node, the way a user runs it on a cluster (README "Run on a real cluster",
with the same files): the chart's operator as a pod (its ServiceAccount and RBAC, in a namespace enforcing the
restricted Pod Security Standard), inputs seeded onto a PVC by a Job from the curation image
(``examples/real-cluster/inputs.yaml``), ``kubectl apply`` of ``examples/real-cluster/reasoningrun.yaml`` and
``kubectl wait --for=condition=Succeeded``. Every stage runs its real container: NeMo Curator with fastText,
training of the tiny model on the CPU (the device plugin's GPU is no CUDA device), PyTriton serving behind
its readiness probe, evaluation through the Service's DNS name. The results are compared with ``reasoning
run`` on the same file, and the operator's metrics are scraped over the cluster network.

Needs the project's images in podman (``make images``); they are streamed into the node's containerd once
(cached, superseded versions pruned). Skipped, saying so, when they are not built.

Seams found here first: the curation image lacked libatomic.so.1 (mimalloc's preload stopped every Ray
process; now checked by ``pipeline.preloadable`` and in the base image's package list).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tests.chart.chart_tools import CHART, helm
from tests.node.conftest import RESTRICTED, busybox_pod, run_to_completion
from tests.support.controlplane import REPO_ROOT, ControlPlane, ensure_default_service_account
from tests.support.fake_kubelet import wait_until
from tests.support.node import GPU_TAINT, NODE_NAME, RealNode

from reasoning_operator.api import GROUP, PLURAL, VERSION
from reasoning_operator.core.builders.pod import RUN_AS_USER

# The first test's setup streams five images into containerd when they changed (minutes each, cold).
pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

EXAMPLES = REPO_ROOT / "examples" / "real-cluster"
INPUTS = EXAMPLES / "inputs.yaml"
RUN_FILE = EXAMPLES / "reasoningrun.yaml"
IMAGES = {
    name: f"ghcr.io/reasoning-operator/{name}:0.1.0"
    for name in ("operator", "curation", "training", "serving", "evaluation")
}
STAGE_PHASES = ["Curating", "Training", "Serving", "Evaluating", "Succeeded"]
RUN_TIMEOUT = 900


def _podman_has(image: str) -> bool:
    if shutil.which("podman") is None:
        return False
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


@pytest.fixture(scope="module")
def images(node_plane: tuple[ControlPlane, RealNode]) -> dict[str, float]:
    missing = [i for i in IMAGES.values() if not _podman_has(i)]
    if missing:
        pytest.skip(f"the project's images are not built here (make images): {missing}")
    node = node_plane[1]
    return {image: node.import_podman_image(image) for image in IMAGES.values()}


@dataclass
class Cluster:
    """One namespace with the chart installed and the inputs seeded, shared by the module's runs."""

    plane: ControlPlane
    node: RealNode
    namespace: str
    api: Any
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def core(self) -> Any:
        return k8s.CoreV1Api(self.api)

    @property
    def batch(self) -> Any:
        return k8s.BatchV1Api(self.api)

    @property
    def custom(self) -> Any:
        return k8s.CustomObjectsApi(self.api)

    def kubectl(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.plane.bin_dir / "kubectl"), "--kubeconfig", str(self.plane.kubeconfig), "-n", self.namespace]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}{proc.stdout}")
        return proc

    def run(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name))

    def pod_logs(self, contains: str = "", tail: int = 30) -> dict[str, str]:
        logs = {}
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            if contains in pod.metadata.name:
                with contextlib.suppress(k8s.ApiException):
                    logs[pod.metadata.name] = self.core.read_namespaced_pod_log(
                        pod.metadata.name, self.namespace, tail_lines=tail
                    )
        return logs


def _volume(core: Any, node: RealNode, namespace: str) -> None:
    """A hostPath PV on the node pre-bound to the claim ``inputs`` that inputs.yaml creates (no provisioner
    here). hostPath ignores fsGroup, so the directory is given to the images' user, as a provisioner's volume
    would be writable for it."""
    path = node.work_dir / "volumes" / namespace
    path.mkdir(parents=True)
    shutil.chown(path, RUN_AS_USER, RUN_AS_USER)
    path.chmod(0o770)
    core.create_persistent_volume(
        {
            "metadata": {"name": f"pv-{namespace}"},
            "spec": {
                "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "",
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": "inputs"},
            },
        }
    )


@contextlib.contextmanager
def installed_cluster(
    node_plane: tuple[ControlPlane, RealNode], imported: dict[str, float], prefix: str, values: Sequence[str] = ()
) -> Iterator[Cluster]:
    """The README's steps up to the run: namespace (restricted PSS), inputs seeded, ``helm install`` (with
    ``values`` beside the test's own). The one real node is also the GPU node; CPU stages (and the operator)
    do not tolerate its GPU taint, so it is lifted while the cluster is in use and put back afterwards."""
    plane, node = node_plane
    namespace = f"{prefix}-{os.urandom(3).hex()}"
    with plane.api_client() as api:
        c = Cluster(plane, node, namespace, api, {f"import {k}": v for k, v in imported.items()})
        labels = {f"pod-security.kubernetes.io/{mode}": RESTRICTED for mode in ("enforce", "warn", "audit")}
        c.core.create_namespace({"metadata": {"name": namespace, "labels": {"reasoning.dev/test": "true", **labels}}})
        c.core.patch_node(NODE_NAME, {"spec": {"taints": []}})
        kube = ["--kubeconfig", str(plane.kubeconfig), "--namespace", namespace]
        try:
            ensure_default_service_account(c.core, namespace)
            _volume(c.core, node, namespace)
            started = time.monotonic()
            c.kubectl("apply", "-f", str(INPUTS))
            seeded = c.kubectl(
                "wait", "--for=condition=Complete", "job/seed-inputs", "--timeout=300s", check=False, timeout=320
            )
            assert seeded.returncode == 0, f"seeding failed: {seeded.stderr} {c.pod_logs('seed-inputs')}"
            c.timings["seed"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            chart_values = ["--set", "image.pullPolicy=Never", "--set", "watch.allNamespaces=false", *values]
            helm("install", "ro", str(CHART), *kube, *chart_values, "--wait", "--timeout", "120s", timeout=180)
            c.timings["helm install"] = round(time.monotonic() - started, 1)
            yield c
        finally:
            helm("uninstall", "ro", *kube, "--wait", "--timeout", "60s", check=False, timeout=90)
            c.core.delete_namespace(namespace, propagation_policy="Background")
            with contextlib.suppress(k8s.ApiException):
                c.core.delete_persistent_volume(f"pv-{namespace}")
            c.core.patch_node(NODE_NAME, {"spec": {"taints": [GPU_TAINT]}})
            print(f"\n[{prefix}] timings (s): {c.timings}")


@pytest.fixture(scope="module")
def cluster(node_plane: tuple[ControlPlane, RealNode], images: dict[str, float]) -> Iterator[Cluster]:
    with installed_cluster(node_plane, images, "n-run") as c:
        yield c


@dataclass
class Watched:
    phases: list[str]
    progress: list[dict[str, Any]]
    status: dict[str, Any]


def _watch(
    c: Cluster, name: str, until: set[str], timeout: float, on_poll: Callable[[dict[str, Any]], None] | None = None
) -> Watched:
    """Poll the run every second, recording each phase it shows and the training progress lines."""
    phases: list[str] = []
    progress: list[dict[str, Any]] = []
    last: dict[str, Any] = {}

    def done() -> bool:
        nonlocal last
        last = c.run(name).get("status") or {}
        if on_poll is not None:
            on_poll(last)
        phase = last.get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        if last.get("trainingProgress") and (not progress or progress[-1] != last["trainingProgress"]):
            progress.append(last["trainingProgress"])
        return phase in until

    try:
        wait_until(done, timeout=timeout, interval=1, what=f"run {name} to reach {until}")
    except Exception as exc:
        op = c.pod_logs("reasoning-operator", tail=40)
        raise AssertionError(f"{exc}; phases {phases}; status {last}\noperator: {op}\npods: {c.pod_logs()}") from exc
    return Watched(phases, progress, last)


RESULTS: dict[str, Any] = {}


class Faults:
    """The two faults injected into the run while it goes (one run, to keep the tier short): the operator pod
    is deleted once the run is Training (its Deployment starts another, which must continue without creating a
    second Job for any stage), and the training pod is deleted once its first checkpoint is complete on the
    volume (the Job's next pod must resume from it, and the result must still equal an uninterrupted run's)."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.operator_deleted: str | None = None
        self.training_deleted: str | None = None
        self.checkpoint: Path | None = None

    def _operator_pod(self) -> Any:
        pods = self.c.core.list_namespaced_pod(
            self.c.namespace, label_selector="app.kubernetes.io/name=reasoning-operator"
        ).items
        return next((p for p in pods if p.metadata.deletion_timestamp is None), None)

    def __call__(self, status: dict[str, Any]) -> None:
        c = self.c
        if self.operator_deleted is None and status.get("phase") == "Training":
            pod = self._operator_pod()
            assert pod is not None
            c.core.delete_namespaced_pod(pod.metadata.name, c.namespace)
            self.operator_deleted = pod.metadata.name
        if self.training_deleted is None and status.get("phase") == "Training":
            volume = c.node.work_dir / "volumes" / c.namespace
            done = sorted(volume.glob("**/checkpoints/step-*/state.json"))
            if not done:
                return
            pods = c.core.list_namespaced_pod(c.namespace, label_selector="reasoning-operator.dev/stage=training").items
            running = [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]
            if running:
                self.checkpoint = done[-1].parent
                c.core.delete_namespaced_pod(running[0].metadata.name, c.namespace)
                self.training_deleted = running[0].metadata.name


def test_a_reasoning_run_succeeds_on_the_real_node(cluster: Cluster) -> None:
    c = cluster
    faults = Faults(c)
    started = time.monotonic()
    c.kubectl("apply", "-f", str(RUN_FILE))
    wait = subprocess.Popen(
        [
            str(c.plane.bin_dir / "kubectl"),
            "--kubeconfig",
            str(c.plane.kubeconfig),
            "-n",
            c.namespace,
            "wait",
            "--for=condition=Succeeded",
            "rr/tiny",
            f"--timeout={RUN_TIMEOUT}s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        watched = _watch(c, "tiny", {"Succeeded", "Failed"}, RUN_TIMEOUT, faults)
        out, _ = wait.communicate(timeout=60)
    finally:
        if wait.poll() is None:
            wait.kill()
            wait.wait()
    c.timings["run"] = round(time.monotonic() - started, 1)
    status = watched.status
    assert status["phase"] == "Succeeded", f"{status}\n{c.pod_logs()}"
    assert wait.returncode == 0, out  # kubectl wait --for=condition=Succeeded returned
    # Pending is often over before the first poll; every stage's phase is seen, in order.
    seen = [p for p in watched.phases if p != "Pending"]
    assert seen == STAGE_PHASES, watched.phases

    curation = status["curation"]
    assert 0 < curation["samplesWritten"] < curation["samplesRead"], curation
    assert curation["dropped"] and curation["reasoningOn"] > 0 and curation["reasoningOff"] > 0, curation
    training = status["training"]
    steps = yaml.safe_load(RUN_FILE.read_text())["spec"]["training"]["maxSteps"]
    assert training["steps"] == steps and math.isfinite(training["finalLoss"]), training
    assert training["adapterPath"].startswith("/workspace/"), training
    # Live progress came from the real training pod's log while it ran.
    assert any(0 < p["step"] <= steps and p["maxSteps"] == steps for p in watched.progress), watched.progress
    accuracies = status["evaluation"]["accuracies"]
    assert {(a["benchmark"], a["mode"], a["model"]) for a in accuracies} == {
        (b, m, model) for b in ("gpqa_diamond", "mmlu") for m in ("on", "off") for model in ("trained", "base")
    }, accuracies
    assert all(0.0 <= a["accuracy"] <= 1.0 for a in accuracies), accuracies
    assert any(a.get("compliance") is not None for a in accuracies), accuracies
    conditions = {cond["type"]: cond["status"] for cond in status["conditions"]}
    for kind in ("DataCurated", "ModelTrained", "Evaluated", "Succeeded"):
        assert conditions.get(kind) == "True", status["conditions"]
    # ServingReady was True while evaluation ran; the Deployment is removed after it (keepServing: false).
    assert "ServingReady" in conditions, status["conditions"]
    # The operator posts a plan's Events after its status patch (best effort), so they may trail the phase.
    expected = {"CurationSucceeded", "TrainingSucceeded", "EvaluationSucceeded", "RunSucceeded"}

    def reasons() -> set[str]:
        events = c.core.list_namespaced_event(c.namespace).items
        return {e.reason for e in events if e.involved_object.kind == "ReasoningRun"}

    try:
        wait_until(lambda: expected <= reasons(), timeout=30, interval=1, what=f"the run's Events {sorted(expected)}")
    except TimeoutError as err:
        raise AssertionError(f"{err}; posted: {sorted(reasons())}") from err

    # Each stage ran once, on the real node, from the image reference the operator wrote.
    jobs = [j for j in c.batch.list_namespaced_job(c.namespace).items if j.metadata.name != "seed-inputs"]
    by_stage = {j.metadata.labels["reasoning-operator.dev/stage"]: j for j in jobs}
    assert sorted(by_stage) == ["curation", "evaluation", "training"] and len(jobs) == 3, [
        j.metadata.name for j in jobs
    ]
    for stage, job in by_stage.items():
        pods = c.core.list_namespaced_pod(c.namespace, label_selector=f"job-name={job.metadata.name}").items
        assert pods and all(p.spec.node_name == NODE_NAME for p in pods), [p.spec for p in pods]
        assert {p.spec.containers[0].image for p in pods} == {IMAGES[stage]}
    # The operator pod deleted mid-run: a new one (another name) finished the run; no stage got a second Job.
    assert faults.operator_deleted is not None
    (operator,) = c.core.list_namespaced_pod(
        c.namespace, label_selector="app.kubernetes.io/name=reasoning-operator"
    ).items
    assert operator.metadata.name != faults.operator_deleted and operator.status.phase == "Running"
    # The training pod deleted after its first checkpoint: the Job's next pod resumed from that checkpoint.
    assert faults.training_deleted is not None and faults.checkpoint is not None, watched.progress
    step = int(faults.checkpoint.name.removeprefix("step-"))
    pods = c.core.list_namespaced_pod(c.namespace, label_selector="reasoning-operator.dev/stage=training").items
    (resumed,) = [p for p in pods if p.metadata.name != faults.training_deleted]
    log = c.core.read_namespaced_pod_log(resumed.metadata.name, c.namespace)
    # At least that checkpoint: on SIGTERM the trainer saves the step it reached and exits 143.
    resumed_at = re.search(r"resumed from \S+/checkpoints/step-(\d+) at step (\d+)", log)
    assert resumed_at is not None and int(resumed_at[2]) >= step, log[-3000:]
    step = int(resumed_at[2])
    assert by_stage["training"].status.failed == 1 and by_stage["training"].status.succeeded == 1, by_stage
    assert any(p["step"] > step for p in watched.progress), watched.progress
    RESULTS["status"] = status
    RESULTS["resumed_at"] = step
    print(
        f"\n[node run] resumed at step {step}; phases {watched.phases}; curation {curation}; "
        f"training {training}; accuracies {accuracies}"
    )


def _on_volume(c: Cluster, path: str) -> Path:
    """Where a pod's path on the run's volume (the claim mounted at /workspace) lies on the node: the hostPath
    PV's directory, which the test reads as root."""
    assert path.startswith("/workspace/"), path
    return c.node.work_dir / "volumes" / c.namespace / path.removeprefix("/workspace/")


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((cond for cond in status.get("conditions") or [] if cond["type"] == kind), None)


def _set_suspend(c: Cluster, name: str, value: bool) -> None:
    c.custom.patch_namespaced_custom_object(GROUP, VERSION, c.namespace, PLURAL, name, {"spec": {"suspend": value}})


def _checkpoints(run_dir: Path) -> list[int]:
    """The steps of the complete checkpoints (state.json is written last) in a run's training output."""
    return sorted(int(p.parent.name.removeprefix("step-")) for p in run_dir.glob("train/checkpoints/step-*/state.json"))


def test_a_run_suspended_mid_training_resumes_and_exports_on_the_real_node(cluster: Cluster) -> None:
    """spec.suspend on real pods: once training has a checkpoint on the volume the run is suspended (the
    operator suspends the training Job, the Job controller deletes its pod, the kubelet's SIGTERM makes the
    trainer save the step it reached), then resumed (a new pod resumes from that checkpoint) to Succeeded,
    through the export stage (spec.export's defaults: the merged model on the run's volume). The TensorBoard
    event files both pods wrote are read back: every step once."""
    c = cluster
    name = "paused"
    job = f"{name}-training"
    manifest = _variant(name, {})
    manifest["spec"]["export"] = {}  # merged: true, destination: export/ in the run's directory
    created = c.custom.create_namespaced_custom_object(GROUP, VERSION, c.namespace, PLURAL, manifest)
    run_dir = _on_volume(c, f"/workspace/runs/{name}-{created['metadata']['uid'][:8]}")
    max_steps = manifest["spec"]["training"]["maxSteps"]

    assert _watch(c, name, {"Training", "Failed"}, 600).status["phase"] == "Training"
    wait_until(lambda: _checkpoints(run_dir), timeout=600, interval=1, what=f"a checkpoint of {name} under {run_dir}")
    _set_suspend(c, name, True)
    wait_until(lambda: c.batch.read_namespaced_job(job, c.namespace).spec.suspend, timeout=30, what=f"{job} suspended")
    # The pod is deleted and gone (the trainer exits at its next step boundary, within the grace period).
    wait_until(
        lambda: not c.core.list_namespaced_pod(c.namespace, label_selector=f"job-name={job}").items,
        timeout=120,
        interval=1,
        what=f"{job}'s pod to go away",
    )

    def held() -> dict[str, Any] | None:
        status = c.run(name).get("status") or {}
        cond = _condition(status, "Suspended")
        return status if cond is not None and cond["status"] == "True" else None

    status = wait_until(held, timeout=60, interval=1, what=f"{name}'s Suspended condition True")
    assert status["phase"] == "Training", status
    assert _condition(status, "Suspended")["reason"] == "SuspendedBySpec", status["conditions"]  # type: ignore[index]
    # Suspended before training ended: the checkpoint the SIGTERM'd trainer left is where it must resume.
    saved = _checkpoints(run_dir)[-1]
    assert 0 < saved < max_steps, _checkpoints(run_dir)

    _set_suspend(c, name, False)
    watched = _watch(c, name, {"Succeeded", "Failed"}, RUN_TIMEOUT)
    status = watched.status
    assert status["phase"] == "Succeeded", f"{status}\n{c.pod_logs()}"
    seen = [p for p in watched.phases if p != "Training"]
    assert seen == ["Serving", "Evaluating", "Exporting", "Succeeded"], watched.phases
    resumed_cond = _condition(status, "Suspended")
    assert resumed_cond is not None and resumed_cond["status"] == "False", status["conditions"]
    assert resumed_cond["reason"] == "Resumed", resumed_cond
    (pod,) = c.core.list_namespaced_pod(c.namespace, label_selector=f"job-name={job}").items
    log = c.core.read_namespaced_pod_log(pod.metadata.name, c.namespace)
    resumed_at = re.search(r"resumed from \S+/checkpoints/step-(\d+) at step (\d+)", log)
    assert resumed_at is not None and int(resumed_at[1]) == int(resumed_at[2]) == saved, log[-3000:]
    training_job = c.batch.read_namespaced_job(job, c.namespace)
    # A suspension spends no retry of the Job's backoff limit.
    assert training_job.status.succeeded == 1 and not training_job.status.failed, training_job.status
    assert status["training"]["steps"] == max_steps, status["training"]

    # The export stage's result, and the merged model it wrote on the run's volume.
    export = status["export"]
    assert status["stages"]["export"]["phase"] == "Succeeded", status["stages"]
    assert (_condition(status, "Exported") or {}).get("status") == "True", status["conditions"]
    assert export["mergedPath"] == f"{export['destination'].rstrip('/')}/merged", export
    merged = _on_volume(c, export["mergedPath"])
    files = {p.name for p in merged.iterdir()}
    assert {"config.json", "tokenizer_config.json", "README.md"} <= files, files
    assert any(f.endswith(".safetensors") for f in files), files
    assert "chat_template" in (merged / "tokenizer_config.json").read_text() or "chat_template.jinja" in files
    card = (merged / "README.md").read_text().splitlines()
    assert f"# {name}" in card and {"## Recipe", "## Training data", "## Evaluation"} <= set(card), card[:40]
    on_disk = [p for p in merged.rglob("*") if p.is_file()]
    assert export["files"] == len(on_disk) and export["bytes"] == sum(p.stat().st_size for p in on_disk), export

    # TensorBoard: one event file per training pod; read together, each step's loss once.
    tensorboard = _on_volume(c, status["training"]["tensorboardDir"])
    events = sorted(tensorboard.glob("events.out.tfevents.*"))
    assert len(events) == 2, events
    accumulator = EventAccumulator(str(tensorboard))
    accumulator.Reload()
    assert [e.step for e in accumulator.Scalars("train/loss")] == list(range(1, max_steps + 1))
    print(f"\n[node run] {name}: suspended with checkpoint step-{saved}, resumed there; export {export}")


def _metric(text: str, name: str, labels: dict[str, str]) -> float | None:
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(name + "{") and all(w in line for w in want):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_operator_metrics_are_scraped_over_the_cluster_network(cluster: Cluster) -> None:
    """A pod fetches /metrics from the chart's metrics Service by its DNS name (CoreDNS, then kube-proxy's
    ClusterIP rules, then the operator pod on the CNI bridge)."""
    c = cluster
    if "status" not in RESULTS:
        pytest.skip("the run did not succeed")
    (svc,) = c.core.list_namespaced_service(
        c.namespace, label_selector="app.kubernetes.io/name=reasoning-operator"
    ).items
    port = svc.spec.ports[0].port
    url = f"http://{svc.metadata.name}.{c.namespace}.svc.cluster.local:{port}/metrics"
    pod, log = run_to_completion(c.core, c.namespace, busybox_pod("scrape", f"wget -q -O- {url}"), timeout=60)
    assert pod.status.phase == "Succeeded", log
    status = RESULTS["status"]
    ident = {"namespace": c.namespace, "run": "tiny"}
    assert _metric(log, "reasoning_curated_samples", ident) == status["curation"]["samplesWritten"], log[:2000]
    for acc in status["evaluation"]["accuracies"]:
        labels = {**ident, "benchmark": acc["benchmark"], "mode": acc["mode"], "model": acc["model"]}
        assert _metric(log, "reasoning_eval_accuracy", labels) == pytest.approx(acc["accuracy"]), (labels, log[:2000])


def test_results_equal_the_local_runner(cluster: Cluster, tmp_path: Path) -> None:
    """``reasoning run`` on the same file (its annotation makes the local runner generate the same inputs the
    seeding Job wrote) gives the same curation counts, training summary and accuracies."""
    if "status" not in RESULTS:
        pytest.skip("the run did not succeed")
    started = time.monotonic()
    reasoning = Path(sys.executable).parent / "reasoning"
    proc = subprocess.run(
        [str(reasoning), "run", str(RUN_FILE), "--run-dir", str(tmp_path / "run"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    cluster.timings["local run"] = round(time.monotonic() - started, 1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    local = yaml.safe_load((tmp_path / "run" / "status.yaml").read_text())
    local = local.get("status", local)
    node = RESULTS["status"]
    print(f"\n[local run] {json.dumps({k: local.get(k) for k in ('curation', 'training', 'evaluation')})[:3000]}")
    keys = ("samplesRead", "samplesWritten", "dropped", "reasoningOn", "reasoningOff", "malformedLines")
    assert {k: local["curation"].get(k) for k in keys} == {k: node["curation"].get(k) for k in keys}
    assert local["training"]["steps"] == node["training"]["steps"]
    assert local["training"]["tokensSeen"] == node["training"]["tokensSeen"]
    assert local["training"]["finalLoss"] == pytest.approx(node["training"]["finalLoss"], rel=1e-3)
    pick = ("benchmark", "mode", "model", "accuracy", "n", "compliance")
    assert sorted(tuple(a.get(k) for k in pick) for a in local["evaluation"]["accuracies"]) == sorted(
        tuple(a.get(k) for k in pick) for a in node["evaluation"]["accuracies"]
    )


def _variant(name: str, overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """reasoningrun.yaml under another name with some spec sections changed."""
    manifest = yaml.safe_load(RUN_FILE.read_text())
    manifest["metadata"] = {"name": name}
    for section, values in overrides.items():
        manifest["spec"].setdefault(section, {}).update(values)
    return dict(manifest)


def test_failures_on_the_node_end_the_run_with_their_reason(cluster: Cluster) -> None:
    """Two runs at once, each failing at a different stage on the real node:

    * ``oom``: curation with a memory limit its container exceeds. The kernel kills it, the kubelet says
      OOMKilled, and the run ends Failed with reason OOMKilled, naming the pod and the stage.
    * ``unready``: serving from an image that cannot start the server (the evaluation image has no Triton),
      so its pod never passes the readiness probe; past ``serving.readyTimeoutSeconds`` the Deployment reports
      ProgressDeadlineExceeded and the run ends Failed (ServingFailed) instead of waiting forever."""
    c = cluster
    started = time.monotonic()
    oom = _variant("oom", {"curation": {"resources": {"cpu": "500m", "memory": "160Mi"}}})
    unready = _variant(
        "unready",
        {
            "training": {"maxSteps": 2, "checkpointInterval": 1},
            "serving": {"readyTimeoutSeconds": 30},
            "images": {"serving": IMAGES["evaluation"]},
        },
    )
    for manifest in (oom, unready):
        c.custom.create_namespaced_custom_object(GROUP, VERSION, c.namespace, PLURAL, manifest)

    failed = _watch(c, "oom", {"Succeeded", "Failed"}, 300).status
    assert failed["phase"] == "Failed", failed
    condition = next(cond for cond in failed["conditions"] if cond["type"] == "Failed")
    assert condition["status"] == "True" and condition["reason"] == "OOMKilled", condition
    pods = c.core.list_namespaced_pod(c.namespace, label_selector="reasoning-operator.dev/stage=curation").items
    killed = [
        p.metadata.name
        for p in pods
        if p.metadata.name.startswith("oom-")
        and any(
            (cs.state.terminated and cs.state.terminated.reason == "OOMKilled")
            for cs in p.status.container_statuses or []
        )
    ]
    assert killed, [p.status.container_statuses for p in pods]
    assert any(f"curation pod {name} was OOMKilled" in condition["message"] for name in killed), condition
    c.timings["oom run"] = round(time.monotonic() - started, 1)

    watched = _watch(c, "unready", {"Succeeded", "Failed"}, 600)
    stuck = watched.status
    assert stuck["phase"] == "Failed" and watched.phases[-2:] == ["Serving", "Failed"], (watched.phases, stuck)
    serving = stuck["stages"]["serving"]
    assert serving["phase"] == "Failed", stuck["stages"]
    # The Deployment controller's own words: 'ReplicaSet "…" has timed out progressing.'
    assert "has timed out progressing" in (stuck.get("failureReason") or ""), stuck
    assert stuck["training"]["steps"] == 2  # it got that far: the failure is serving's
    c.timings["unready run"] = round(time.monotonic() - started, 1)
