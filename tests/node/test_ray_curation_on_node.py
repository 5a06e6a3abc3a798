"""spec.curation.cluster on the real node: KubeRay v1.6.0's own operator (a process against the node's control
plane, its CRDs installed) runs the RayJob the chart's operator writes (``curation.rayCluster.enabled``), with
real Ray in the curation image on a head and 2 workers, to Succeeded on the inputs ``inputs.yaml`` seeds; the
curated output is byte-identical to the single-pod curation of the same inputs in the same namespace, and
stays so when a worker pod is killed mid-run (which the cluster absorbs: no retry on a new cluster).

KubeRay's controller polls the head's dashboard through the apiserver's service proxy
(``--use-kubernetes-proxy``): it runs on the host, outside the cluster's DNS. Token auth is KubeRay's own
(``authOptions``), so this also checks that its controller, the submitter and the driver get through it.

Needs the project's operator and curation images in podman (``make images``) and KubeRay's operator binary
(``tests.support.kuberay.operator_binary``); skipped, saying so, without them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.node.test_run_on_node import IMAGES, RUN_FILE, Cluster, _podman_has, installed_cluster
from tests.support.controlplane import ControlPlane
from tests.support.fake_kubelet import wait_until
from tests.support.kuberay import install_crds, operator_binary, running_operator
from tests.support.node import RealNode

from reasoning_jobs.common.artifacts import INPUTS_FILE
from reasoning_operator.api import GROUP, PLURAL, VERSION, CurationProgress
from reasoning_operator.api.contract import SUMMARY_FILE, parse_progress_line

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

USED = ("operator", "curation")
CLUSTER = {
    "workers": 2,
    "workerResources": {"cpu": "500m", "memory": "2Gi"},
    "headResources": {"cpu": "250m", "memory": "2Gi"},
}
CURATION_TIMEOUT = 900
#: summary.json's field that names the run rather than the data: its own path. Its stage key (inputsKey) stays:
#: how curation runs (a pod's workers, a cluster) is not part of it, so both runs have the same.
RUN_SPECIFIC = ("outputPath",)
#: The single-pod curation's status and files, for the worker-loss test.
SINGLE: dict[str, Any] = {}
#: Per run: the RayJob's status as it changed, and the last lines of every Ray or submitter pod that failed.
HISTORY: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def kuberay(node_plane: tuple[ControlPlane, RealNode], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """KubeRay's CRDs in the node's control plane and its operator as a process; yields the operator's log."""
    binary = operator_binary(build=os.environ.get("REASONING_BUILD_KUBERAY") == "1")
    if binary is None:
        pytest.skip("KubeRay's operator is not built: REASONING_BUILD_KUBERAY=1 builds it (cached afterwards)")
    plane = node_plane[0]
    with plane.api_client() as api:
        install_crds(api)
    # outside the cluster's DNS: KubeRay reaches the head's dashboard through the apiserver's service proxy
    log = tmp_path_factory.mktemp("kuberay-node") / "ray-operator.log"
    with running_operator(binary, plane.kubeconfig, log, "--use-kubernetes-proxy"):
        yield log


@pytest.fixture(scope="module")
def ray_cluster(node_plane: tuple[ControlPlane, RealNode], kuberay: Path) -> Iterator[Cluster]:
    """A restricted namespace with the inputs seeded and the chart installed with ray.io rights; the node's
    GPU taint lifted for the module (CPU pods do not tolerate it)."""
    missing = [IMAGES[n] for n in USED if not _podman_has(IMAGES[n])]
    if missing:
        pytest.skip(f"the project's images are not built here (make images): {missing}")
    node = node_plane[1]
    imported = {IMAGES[n]: node.import_podman_image(IMAGES[n]) for n in USED}
    with installed_cluster(node_plane, imported, "n-ray", ["--set", "curation.rayCluster.enabled=true"]) as c:
        yield c


def _curation_run(name: str, cluster: dict[str, Any] | None) -> dict[str, Any]:
    """reasoningrun.yaml's spec under another name, curation on a Ray cluster when ``cluster`` is given."""
    manifest = yaml.safe_load(RUN_FILE.read_text())
    manifest["metadata"] = {"name": name}
    if cluster is not None:
        manifest["spec"]["curation"]["cluster"] = cluster
    return dict(manifest)


def _curation_done(status: dict[str, Any]) -> bool:
    return (status.get("stages") or {}).get("curation", {}).get("phase") in ("Succeeded", "Failed") or status.get(
        "phase"
    ) == "Failed"


def _note_rayjob(c: Cluster, name: str, history: list[str]) -> None:
    """Append the RayJob's status when it changed, and the log tail of each pod of the run that failed (a
    retried cluster's pods are gone a moment later, and with them the reason)."""
    for job in c.custom.list_namespaced_custom_object(
        "ray.io", "v1", c.namespace, "rayjobs", label_selector=f"reasoning-operator.dev/run={name}"
    )["items"]:
        st = job.get("status") or {}
        keys = ("jobDeploymentStatus", "jobStatus", "rayClusterName", "failed", "succeeded", "reason", "message")
        line = "rayjob " + json.dumps({k: st.get(k) for k in keys if st.get(k) is not None}, sort_keys=True)
        if line not in [h for h in history if h.startswith("rayjob ")][-1:]:
            history.append(line)
    for pod in c.core.list_namespaced_pod(c.namespace).items:
        pod_name = pod.metadata.name
        if not pod_name.startswith(f"{name}-") or any(h.startswith(f"pod {pod_name} ") for h in history):
            continue
        statuses = pod.status.container_statuses or []
        failed = pod.status.phase == "Failed" or any(
            s.state.terminated is not None and s.state.terminated.exit_code != 0 for s in statuses
        )
        if failed:
            tail = ""
            with contextlib.suppress(Exception):
                tail = c.core.read_namespaced_pod_log(pod_name, c.namespace, tail_lines=25)
            history.append(f"pod {pod_name} failed:\n{tail}")


def _curate(
    c: Cluster,
    name: str,
    cluster: dict[str, Any] | None,
    seen: dict[str, set[str]],
    on_poll: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Run curation to its end, then delete the run (its later stages are not this test's); return the status
    and the sha256 of every file the stage wrote (summary.json read as JSON, less its run-specific path).
    ``seen`` collects the names of the run's Ray pods by node type (head, worker) while it goes."""
    started = time.monotonic()
    c.custom.create_namespaced_custom_object(GROUP, VERSION, c.namespace, PLURAL, _curation_run(name, cluster))
    last: dict[str, Any] = {}

    history: list[str] = []
    HISTORY[name] = history

    def done() -> bool:
        nonlocal last
        last = c.run(name).get("status") or {}
        for pod in c.core.list_namespaced_pod(
            c.namespace, label_selector=f"reasoning-operator.dev/run={name},ray.io/node-type"
        ).items:
            seen.setdefault(pod.metadata.labels["ray.io/node-type"], set()).add(pod.metadata.name)
        _note_rayjob(c, name, history)
        if on_poll is not None:
            on_poll()
        return _curation_done(last)

    try:
        wait_until(done, timeout=CURATION_TIMEOUT, interval=2, what=f"run {name}'s curation to end")
    except TimeoutError as err:
        raise AssertionError(f"{err}; status {last}; pods {c.pod_logs(name)}; rayjob {history}") from None
    c.timings[f"curation {name}"] = round(time.monotonic() - started, 1)
    assert last["stages"]["curation"]["phase"] == "Succeeded", f"{last}\n{c.pod_logs(name, tail=60)}\n{history}"
    out = Path(last["curation"]["outputPath"])
    assert out.is_absolute() and out.parts[1] == "workspace", out
    curated = c.node.work_dir / "volumes" / c.namespace / out.parent.relative_to("/workspace")
    hashes = {}
    for path in sorted(p for p in curated.rglob("*") if p.is_file()):
        rel = str(path.relative_to(curated))
        if rel == INPUTS_FILE:
            continue  # the stage's stamp (its key, a timestamp): not curated data
        if rel == SUMMARY_FILE:
            summary = json.loads(path.read_text())
            for volatile in RUN_SPECIFIC:
                summary.pop(volatile, None)
            hashes[rel] = json.dumps(summary, sort_keys=True)
        else:
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    c.custom.delete_namespaced_custom_object(GROUP, VERSION, c.namespace, PLURAL, name)
    return last, hashes


def _curate_on_kuberay(
    c: Cluster, kuberay: Path, name: str, seen: dict[str, set[str]], on_poll: Callable[[], None] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """`_curate` on a KubeRay cluster (CLUSTER); a failure also shows the end of KubeRay's log."""
    try:
        return _curate(c, name, CLUSTER, seen, on_poll)
    except AssertionError as err:
        raise AssertionError(f"{err}\nKubeRay's log:\n{kuberay.read_text(errors='replace')[-4000:]}") from None


#: The curation result's counts, which every way of running it must agree on.
COUNTS = ("samplesRead", "samplesWritten", "dropped", "reasoningOn", "reasoningOff", "malformedLines")


def _counts(status: dict[str, Any]) -> dict[str, Any]:
    return {k: status["curation"].get(k) for k in COUNTS}


def test_curation_on_a_kuberay_cluster_equals_the_single_pod_curation(ray_cluster: Cluster, kuberay: Path) -> None:
    c = ray_cluster
    seen: dict[str, set[str]] = {}
    single, single_files = _curate(c, "single", None, seen)
    assert not c.custom.list_namespaced_custom_object("ray.io", "v1", c.namespace, "rayjobs")["items"]
    ray, ray_files = _curate_on_kuberay(c, kuberay, "ray", seen)
    SINGLE.update(status=single, files=single_files)
    assert "training.jsonl" in single_files and single["curation"]["samplesWritten"] > 0
    assert ray_files == single_files
    assert _counts(ray) == _counts(single)
    # Status counted the blocks (all of them once done) and, on the cluster, KubeRay's workers.
    blocks = single["curation"]["blocks"]
    assert blocks >= 1 and ray["curation"]["blocks"] == blocks
    assert single["curationProgress"] == {"blocksDone": blocks, "blocksTotal": blocks}
    assert ray["curationProgress"]["blocksDone"] == ray["curationProgress"]["blocksTotal"] == blocks
    assert ray["curationProgress"]["workersDesired"] == CLUSTER["workers"], ray["curationProgress"]
    # It ran on KubeRay's cluster: a head and two workers of that run (none replaced).
    assert {k: len(v) for k, v in seen.items()} == {"head": 1, "worker": 2}, seen
    print(f"\n[ray node] single {single['curation']}\n[ray node] ray {ray['curation']}; files {ray_files}")


def _driver_progress(c: Cluster, run: str) -> CurationProgress | None:
    """The driver's last progress line, in the log of the run's running submitter (it follows the driver's)."""
    submitters = c.core.list_namespaced_pod(c.namespace, label_selector=f"batch.kubernetes.io/job-name={run}-curation")
    running = [p for p in submitters.items if p.status.phase == "Running"]
    if not running:
        return None
    log = c.core.read_namespaced_pod_log(running[0].metadata.name, c.namespace)
    progress = [p for line in log.splitlines() if (p := parse_progress_line(line, CurationProgress)) is not None]
    return progress[-1] if progress else None


def _delete_a_running(c: Cluster, run: str, node_type: str) -> str:
    """Delete one of the run's running Ray pods of this node type at once (grace 0); its name."""
    selector = f"reasoning-operator.dev/run={run},ray.io/node-type={node_type}"
    pods = c.core.list_namespaced_pod(c.namespace, label_selector=selector).items
    victim = next(p for p in pods if p.status.phase == "Running")
    c.core.delete_namespaced_pod(victim.metadata.name, c.namespace, grace_period_seconds=0)
    return str(victim.metadata.name)


def test_a_worker_killed_mid_run_still_ends_in_the_identical_output(ray_cluster: Cluster, kuberay: Path) -> None:
    """One worker pod is deleted at once (grace 0) as soon as the driver starts the pipeline (its first progress
    line, in the log the submitter follows): Ray retries the lost work elsewhere, KubeRay starts a new worker,
    the RayJob never fails over to a new cluster, and the output is still the single-pod curation's, rows
    neither lost nor written twice."""
    if not SINGLE:
        pytest.skip("the single-pod curation did not run")
    c = ray_cluster
    killed: list[str] = []
    at: list[CurationProgress] = []

    def kill_a_worker() -> None:
        progress = _driver_progress(c, "kill") if not killed else None
        if progress is not None:  # its first line comes just before the pipeline runs: blocks in flight
            killed.append(_delete_a_running(c, "kill", "worker"))
            at.append(progress)

    seen: dict[str, set[str]] = {}
    status, files = _curate_on_kuberay(c, kuberay, "kill", seen, kill_a_worker)
    history = HISTORY["kill"]
    print(f"\n[ray node] killed {killed} at {at}; pods seen {seen}; rayjob:\n" + "\n".join(history))
    assert killed, "the driver's first progress line was never seen in the submitter's log"
    assert files == SINGLE["files"]
    assert _counts(status) == _counts(SINGLE["status"])
    # The loss was absorbed inside the cluster: one head (no RayJob retry on a new cluster), and KubeRay
    # replaced the lost worker: three worker pods ran, the killed one among them.
    retried = [line for line in history if line.startswith("rayjob ") and json.loads(line[7:]).get("failed")]
    assert not retried and len(seen["head"]) == 1, history
    assert killed[0] in seen["worker"] and len(seen["worker"]) == 3, (seen, history)


def test_a_lost_head_is_retried_within_the_backoff_limits_to_the_identical_output(
    ray_cluster: Cluster, kuberay: Path
) -> None:
    """The head pod (GCS, job server, driver) is deleted at once as soon as the driver starts the pipeline. Ray
    keeps no state past its head here (no GCS fault tolerance), so the job is lost with it: KubeRay's submitter
    Job (``submitterConfig.backoffLimit``) or the RayJob (``backoffLimit``, a new cluster) submits it again, and
    the driver curates again from the start, which gives the single-pod output. The stage ends Succeeded."""
    if not SINGLE:
        pytest.skip("the single-pod curation did not run")
    c = ray_cluster
    killed: list[str] = []

    def kill_the_head() -> None:
        if not killed and _driver_progress(c, "head") is not None:
            killed.append(_delete_a_running(c, "head", "head"))

    seen: dict[str, set[str]] = {}
    status, files = _curate_on_kuberay(c, kuberay, "head", seen, kill_the_head)
    history = HISTORY["head"]
    print(f"\n[ray node] killed head {killed}; pods seen {seen}; rayjob:\n" + "\n".join(history))
    assert killed, "the driver's first progress line was never seen in the submitter's log"
    assert files == SINGLE["files"]
    assert _counts(status) == _counts(SINGLE["status"])
    assert killed[0] in seen["head"] and len(seen["head"]) >= 2, (seen, history)
