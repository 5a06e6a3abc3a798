"""spec.curation.cluster on the real node: KubeRay v1.6.0's own operator (a process against the node's control
plane, its CRDs installed) runs the RayJob the chart's operator writes (``curation.rayCluster.enabled``), with
real Ray in the curation image on a head and 2 workers, to Succeeded on the inputs ``inputs.yaml`` seeds; the
curated output is byte-identical to the single-pod curation of the same inputs in the same namespace, and
stays so when a worker pod is killed mid-run.

KubeRay's controller polls the head's dashboard through the apiserver's service proxy
(``--use-kubernetes-proxy``): it runs on the host, outside the cluster's DNS. Token auth is KubeRay's own
(``authOptions``), so this also checks that its controller, the submitter and the driver get through it.

Needs the project's operator and curation images in podman (``make images``) and KubeRay's operator binary
(``tests.support.kuberay.operator_binary``); skipped, saying so, without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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
from reasoning_operator.api import GROUP, PLURAL, VERSION
from reasoning_operator.api.contract import SUMMARY_FILE

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

USED = ("operator", "curation")
CLUSTER = {
    "workers": 2,
    "workerResources": {"cpu": "500m", "memory": "2Gi"},
    "headResources": {"cpu": "250m", "memory": "2Gi"},
}
CURATION_TIMEOUT = 900
#: summary.json's fields that name the run rather than the data: its own path, and the stage key (the cluster's
#: settings are part of it, as the single-pod Job's ``workers`` are).
RUN_SPECIFIC = ("outputPath", "inputsKey")
#: The single-pod curation's status and files, for the worker-loss test.
SINGLE: dict[str, Any] = {}


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

    def done() -> bool:
        nonlocal last
        last = c.run(name).get("status") or {}
        for pod in c.core.list_namespaced_pod(
            c.namespace, label_selector=f"reasoning-operator.dev/run={name},ray.io/node-type"
        ).items:
            seen.setdefault(pod.metadata.labels["ray.io/node-type"], set()).add(pod.metadata.name)
        if on_poll is not None:
            on_poll()
        return _curation_done(last)

    try:
        wait_until(done, timeout=CURATION_TIMEOUT, interval=2, what=f"run {name}'s curation to end")
    except TimeoutError as err:
        raise AssertionError(f"{err}; status {last}; pods {c.pod_logs(name)}") from None
    c.timings[f"curation {name}"] = round(time.monotonic() - started, 1)
    assert last["stages"]["curation"]["phase"] == "Succeeded", f"{last}\n{c.pod_logs(name, tail=60)}"
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


def test_curation_on_a_kuberay_cluster_equals_the_single_pod_curation(ray_cluster: Cluster, kuberay: Path) -> None:
    c = ray_cluster
    seen: dict[str, set[str]] = {}
    single, single_files = _curate(c, "single", None, seen)
    assert not c.custom.list_namespaced_custom_object("ray.io", "v1", c.namespace, "rayjobs")["items"]
    try:
        ray, ray_files = _curate(c, "ray", CLUSTER, seen)
    except AssertionError as err:
        raise AssertionError(f"{err}\nKubeRay's log:\n{kuberay.read_text(errors='replace')[-4000:]}") from None
    SINGLE.update(status=single, files=single_files)
    assert "training.jsonl" in single_files and single["curation"]["samplesWritten"] > 0
    assert ray_files == single_files
    keys = ("samplesRead", "samplesWritten", "dropped", "reasoningOn", "reasoningOff", "malformedLines")
    assert {k: ray["curation"].get(k) for k in keys} == {k: single["curation"].get(k) for k in keys}
    # It ran on KubeRay's cluster: a head and two workers of that run (none replaced).
    assert {k: len(v) for k, v in seen.items()} == {"head": 1, "worker": 2}, seen
    print(f"\n[ray node] single {single['curation']}\n[ray node] ray {ray['curation']}; files {ray_files}")


def test_a_worker_killed_mid_run_still_ends_in_the_identical_output(ray_cluster: Cluster, kuberay: Path) -> None:
    """One worker pod is deleted at once (grace 0) as soon as the driver has planned its blocks (its log, which
    the submitter follows): Ray retries the lost blocks elsewhere, KubeRay starts a new worker, and the output is
    still the single-pod curation's, rows neither lost nor written twice."""
    if not SINGLE:
        pytest.skip("the single-pod curation did not run")
    c = ray_cluster
    killed: list[str] = []

    def kill_a_worker() -> None:
        if killed:
            return
        selector = "batch.kubernetes.io/job-name=kill-curation"
        submitters = c.core.list_namespaced_pod(c.namespace, label_selector=selector).items
        running = [p for p in submitters if p.status.phase == "Running"]
        if not running:
            return
        log = c.core.read_namespaced_pod_log(running[0].metadata.name, c.namespace)
        if not re.search(r"curating \d+ files .* in \d+ blocks", log):
            return
        workers = c.core.list_namespaced_pod(
            c.namespace, label_selector="reasoning-operator.dev/run=kill,ray.io/node-type=worker"
        ).items
        victim = next(p for p in workers if p.status.phase == "Running")
        c.core.delete_namespaced_pod(victim.metadata.name, c.namespace, grace_period_seconds=0)
        killed.append(victim.metadata.name)

    seen: dict[str, set[str]] = {}
    try:
        status, files = _curate(c, "kill", CLUSTER, seen, kill_a_worker)
    except AssertionError as err:
        raise AssertionError(f"{err}\nKubeRay's log:\n{kuberay.read_text(errors='replace')[-4000:]}") from None
    assert killed, "the driver's block plan was never seen in the submitter's log"
    assert files == SINGLE["files"]
    keys = ("samplesRead", "samplesWritten", "dropped", "reasoningOn", "reasoningOff", "malformedLines")
    assert {k: status["curation"].get(k) for k in keys} == {k: SINGLE["status"]["curation"].get(k) for k in keys}
    # KubeRay replaced the lost worker: three worker pods ran, the killed one among them.
    assert killed[0] in seen["worker"] and len(seen["worker"]) == 3, seen
    print(f"\n[ray node] killed {killed[0]}; workers seen {sorted(seen['worker'])}")
