"""The chart on the real control plane: `helm install` (CRDs from the chart's crds/), the operator Deployment
admitted under the `restricted` Pod Security Standard, then the operator run as a local process with the
Deployment's own arguments and the chart ServiceAccount's token (no container runs here), driving a
ReasoningRun to Succeeded: proof that the rendered RBAC is sufficient. SelfSubjectAccessReviews and real
calls then prove it is also narrow (no secrets, no nodes, no writes to a run's spec, no other namespaces in
namespaced mode).

The CRD is cluster-scoped and shared by the session: when it already exists (tests/e2e installed it), the
installed schema must equal the chart's; when the chart installed it, it is deleted (and awaited) at the end
so tests/e2e can create it again. While these tests run, no other operator may watch the test namespaces:
tests/e2e's session operator (all namespaces) starts after tests/chart in a full run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from tests.chart.chart_tools import CHART, VALUES_DIR, helm
from tests.e2e.conftest import REPO, Operator, Runs
from tests.e2e.test_run_lifecycle import CURATION, EVALUATION, TRAINING
from tests.support.controlplane import ControlPlane, build_binaries, free_port
from tests.support.fake_kubelet import finish_job_pods, wait_until

from reasoning_operator.api import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.controlplane
CRD_NAME = f"{PLURAL}.{GROUP}"
EXAMPLE = yaml.safe_load((REPO / "examples" / "reasoningrun.yaml").read_text())
NAME = EXAMPLE["metadata"]["name"]
MIRROR = "registry.example.com/mirror/curation:0.1.0"


class ChartOperator(Operator):
    """`reasoning operator` with the arguments and environment of the chart's Deployment (ports swapped for
    free ones: several operators may run on this machine)."""

    def __init__(self, kubeconfig: Path, log_path: Path, container: dict[str, Any]) -> None:
        super().__init__(kubeconfig, log_path)
        self.health_port = free_port()
        ports = {"--metrics-port": self.metrics_port, "--health-port": self.health_port}
        self.args = [
            f"{flag}={ports[flag]}" if (flag := arg.split("=")[0]) in ports else arg for arg in container["args"]
        ]
        self.env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        assert container["command"] == ["reasoning"]

    def start(self) -> None:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), str(REPO / "jobs"), env.get("PYTHONPATH", "")])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reasoning_operator.cli", *self.args, "--kubeconfig", str(self.kubeconfig)],
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env=env,
        )

    def healthz(self) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as response:
            return int(response.status)


class Release:
    """One `helm install` into its own namespace (labelled to enforce the restricted Pod Security Standard)."""

    def __init__(self, plane: ControlPlane, name: str, values: list[str]) -> None:
        self.plane = plane
        self.name = name
        self.namespace = f"{name}-{os.urandom(3).hex()}"
        self.values = values
        self.notes = ""

    def install(self) -> None:
        with self.plane.api_client() as api:
            labels = {f"pod-security.kubernetes.io/{m}": "restricted" for m in ("enforce", "warn")}
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": self.namespace, "labels": labels}})
        out = self._helm("install", self.name, str(CHART), *self.values, "--wait", "--timeout", "90s")
        self.notes = out.stdout

    def uninstall(self) -> None:
        self._helm("uninstall", self.name, "--wait", "--timeout", "60s", check=False)
        with self.plane.api_client() as api, contextlib.suppress(ApiException):
            k8s.CoreV1Api(api).delete_namespace(self.namespace, propagation_policy="Background")

    def _helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kube = ["--kubeconfig", str(self.plane.kubeconfig), "--namespace", self.namespace]
        return helm(*args, *kube, check=check, timeout=150)

    def deployment(self) -> Any:
        with self.plane.api_client() as api:
            return k8s.AppsV1Api(api).read_namespaced_deployment(f"{self.name}-reasoning-operator", self.namespace)

    def container(self) -> dict[str, Any]:
        with self.plane.api_client() as api:
            dep = api.sanitize_for_serialization(self.deployment())
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        return dict(container)

    def operator(self, log_dir: Path) -> ChartOperator:
        sa = self.deployment().spec.template.spec.service_account_name
        kubeconfig = self.plane.kubeconfig_for_service_account(self.namespace, sa)
        return ChartOperator(kubeconfig, log_dir / f"{self.name}.log", self.container())


@pytest.fixture(scope="module")
def chart_crd(control_plane: ControlPlane) -> Iterator[str]:
    """Whether the CRD was there before ('existing') or comes from the chart ('chart'); cleans up after."""
    with control_plane.api_client() as api:
        ext = k8s.ApiextensionsV1Api(api)
        try:
            installed = api.sanitize_for_serialization(ext.read_custom_resource_definition(CRD_NAME))
        except ApiException as err:
            if err.status != 404:
                raise
            installed = None
        if installed is not None:
            chart = yaml.safe_load((CHART / "crds" / "reasoningruns.yaml").read_text())
            assert installed["spec"]["versions"] == chart["spec"]["versions"], "installed CRD differs from the chart's"
            yield "existing"
            return
        yield "chart"
        with contextlib.suppress(ApiException):
            ext.delete_custom_resource_definition(CRD_NAME)

        def gone() -> bool:
            try:
                ext.read_custom_resource_definition(CRD_NAME)
            except ApiException as err:
                return err.status == 404
            return False

        wait_until(gone, timeout=60, what="CRD deleted")


@pytest.fixture
def claim_volume(control_plane: ControlPlane, namespace: str) -> Iterator[None]:
    """A volume pre-bound to the run's claim (the cluster has no provisioner)."""
    name = f"chart-pv-{os.urandom(3).hex()}"
    with control_plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        core.create_persistent_volume(
            {
                "metadata": {"name": name},
                "spec": {
                    "capacity": {"storage": "10Ti"},
                    "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": f"/tmp/{name}"},
                    "claimRef": {"namespace": namespace, "name": f"{NAME}-data"},
                },
            }
        )
        try:
            yield
        finally:
            core.delete_persistent_volume(name)


def _allowed(api: k8s.ApiClient, verb: str, resource: str, namespace: str | None = None, group: str = "") -> bool:
    subresource = ""
    if "/" in resource:
        resource, subresource = resource.split("/")
    attrs = {"verb": verb, "resource": resource, "group": group, "subresource": subresource}
    if namespace:
        attrs["namespace"] = namespace
    review = k8s.AuthorizationV1Api(api).create_self_subject_access_review({"spec": {"resourceAttributes": attrs}})
    return bool(review.status.allowed)


#: kopf's optional resource/namespace scanning (cluster-wide CRD and Namespace watches). Without the grant it
#: logs these 403s, falls back to what it found at startup, and carries on (kopf/_core/reactor/observation.py);
#: the chart grants neither. `settings.scanning.disabled = True` in the operator would silence them.
KOPF_SCANNING = re.compile(r"GET \S+/(apis/apiextensions\.k8s\.io/v1/customresourcedefinitions|api/v1/namespaces)[? ]")


def _forbidden(log: str) -> list[str]:
    """403s in the operator's log other than kopf's optional scanning."""
    return [
        line
        for line in log.splitlines()
        if ("Forbidden" in line or " 403" in line)
        and not KOPF_SCANNING.search(line)
        and "Not enough permissions to" not in line
    ]


def _delete_runs(plane: ControlPlane, namespace: str) -> None:
    """Delete the test's runs (they carry no finalizer, so this works whether or not the operator runs)."""
    with plane.api_client() as admin:
        custom = k8s.CustomObjectsApi(admin)
        with contextlib.suppress(ApiException):
            custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        wait_until(
            lambda: not custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"],
            timeout=30,
            what="runs deleted",
        )


def _wait_ready(op: ChartOperator) -> None:
    def healthy() -> bool:
        assert op.alive(), f"operator exited:\n{op.log_tail()}"
        with contextlib.suppress(OSError):
            return op.healthz() == 200
        return False

    wait_until(healthy, timeout=60, what="operator /healthz")


def test_kubectl_reads_the_chart_crd_as_generated(control_plane: ControlPlane) -> None:
    """kubectl and Helm parse YAML with go-yaml (YAML 1.1), where a bare `n:` is the boolean false: the
    apiserver then got a property named "false" and pruned every accuracy's `n` from status. The server's dry
    run of the chart's CRD must carry exactly the schema PyYAML reads from the same file."""
    path = CHART / "crds" / "reasoningruns.yaml"
    proc = subprocess.run(
        [str(control_plane.bin_dir / "kubectl"), "--kubeconfig", str(control_plane.kubeconfig), "apply",
         "--dry-run=server", "-o", "json", "-f", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    served = json.loads(proc.stdout)["spec"]["versions"]
    assert served == yaml.safe_load(path.read_text())["spec"]["versions"]


def test_cluster_wide_release_runs_a_reasoningrun_to_succeeded_with_its_own_rbac(
    control_plane: ControlPlane,
    chart_crd: str,
    namespace: str,
    claim_volume: None,
    tmp_path: Path,
) -> None:
    release = Release(
        control_plane,
        "ro-cluster",
        [
            "--values",
            str(VALUES_DIR / "default.yaml"),
            "--set",
            "runDefaults.admissionPolicy=true",
            "--set",
            f"runDefaults.images.curation={MIRROR}",
        ],
    )
    release.install()
    op: ChartOperator | None = None
    try:
        assert "kubectl wait --for=condition=Succeeded rr/my-first-run" in release.notes
        # The Deployment's pod passed `restricted` Pod Security admission and (kwok playing the kubelet) is ready.
        assert release.deployment().status.ready_replicas == 1
        _assert_pod_security_admission_is_what_admitted_it(control_plane, release)
        with control_plane.api_client() as admin:
            assert k8s.ApiextensionsV1Api(admin).read_custom_resource_definition(CRD_NAME)
            _wait_for_run_defaults_policy(admin, namespace)

        op = release.operator(tmp_path)
        assert "--all-namespaces" in op.args and "--log-format=json" in op.args
        op.start()
        _wait_ready(op)
        with control_plane.api_client() as admin:
            runs = Runs(admin, namespace, op)
            created = runs.create(EXAMPLE)
            obj = runs.wait_phase(NAME, "Curating")
            assert obj["spec"]["images"]["curation"] == MIRROR  # the chart's job default, applied at admission
            job = runs.batch.read_namespaced_job(f"{NAME}-curation", namespace)
            assert job.spec.template.spec.containers[0].image == MIRROR
            finish_job_pods(runs.core, namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
            runs.wait_phase(NAME, "Training")
            finish_job_pods(runs.core, namespace, f"{NAME}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
            runs.wait_phase(NAME, "Evaluating", timeout=90)
            finish_job_pods(runs.core, namespace, f"{NAME}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
            obj = runs.wait_phase(NAME, "Succeeded")
            # The operator never wrote spec (generation counts spec changes), so Git stays the source of truth.
            assert obj["metadata"]["generation"] == 1
            assert obj["spec"] == created["spec"]
            succeeded = next(c for c in obj["status"]["conditions"] if c["type"] == "Succeeded")
            assert succeeded["status"] == "True"
            _kubectl_wait_succeeded(control_plane, namespace)
            reasons = {e.reason for e in runs.core.list_namespaced_event(namespace).items}
            assert "RunSucceeded" in reasons  # events: create is granted and used
            wait_until(
                lambda: not runs.apps.list_namespaced_deployment(namespace).items,
                timeout=30,
                what="serving Deployment deleted by the operator",
            )
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
        assert f'reasoning_runs{{namespace="{namespace}",phase="Succeeded",run="{NAME}"}} 1.0' in metrics
        log = op.log_path.read_text(errors="replace")
        assert _forbidden(log) == [], op.log_tail(80)
        # JSON logs: every line an object (log pipelines parse them).
        lines = [line for line in log.splitlines() if line.strip()]
        assert lines and all(json.loads(line)["message"] is not None for line in lines)

        with control_plane.api_client(op.kubeconfig) as sa:
            _assert_cluster_wide_rbac_is_narrow(sa, namespace, release.namespace)
    finally:
        _delete_runs(control_plane, namespace)
        if op is not None:
            op.stop()
        release.uninstall()


def _kubectl_wait_succeeded(plane: ControlPlane, namespace: str) -> None:
    """What NOTES.txt and the GitOps README tell users to run, with the control plane's own kubectl."""
    kubectl = build_binaries(build=False) / "kubectl"
    wait = ["wait", "--for=condition=Succeeded", f"rr/{NAME}", "--timeout=20s"]
    result = subprocess.run(
        [str(kubectl), "--kubeconfig", str(plane.kubeconfig), "-n", namespace, *wait],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "condition met" in result.stdout, result.stderr


def _assert_pod_security_admission_is_what_admitted_it(plane: ControlPlane, release: Release) -> None:
    """Negative control: the same pod template with privilege escalation allowed is rejected there."""
    with plane.api_client() as admin:
        template = admin.sanitize_for_serialization(release.deployment().spec.template)
        core = k8s.CoreV1Api(admin)
        pod = {"metadata": {"generateName": "psa-check-"}, "spec": template["spec"]}
        core.create_namespaced_pod(release.namespace, pod, dry_run="All")  # as rendered: admitted
        pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
        with pytest.raises(ApiException) as err:
            core.create_namespaced_pod(release.namespace, pod, dry_run="All")
        assert err.value.status == 403 and "violates PodSecurity" in str(err.value.body)


def _wait_for_run_defaults_policy(admin: k8s.ApiClient, namespace: str) -> None:
    """Admission policies load asynchronously: dry-run a run until the mutation shows."""
    custom = k8s.CustomObjectsApi(admin)

    def mutated() -> bool:
        try:
            obj = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, EXAMPLE, dry_run="All")
        except ApiException as err:
            if err.status in (404, 503):  # a CRD the chart just created is served a moment later
                return False
            raise
        return bool(obj["spec"]["images"]["curation"] == MIRROR)

    wait_until(mutated, timeout=30, interval=0.5, what="CRD served and run-defaults MutatingAdmissionPolicy in effect")


def _assert_cluster_wide_rbac_is_narrow(sa: k8s.ApiClient, run_namespace: str, release_namespace: str) -> None:
    # What it needs, anywhere (pods/log too, which kwok cannot exercise: kube.py reads training progress there).
    for verb, resource, group in (
        ("create", "jobs", "batch"),
        ("patch", "jobs", "batch"),  # spec.suspend
        ("patch", "workloads", "kueue.x-k8s.io"),  # spec.active, for spec.suspend on a queued run
        ("patch", "reasoningruns/status", GROUP),
        ("get", "pods/log", ""),
        ("patch", "deployments", "apps"),
        ("create", "events", ""),
    ):
        assert _allowed(sa, verb, resource, "some-other-namespace", group), f"{verb} {resource} should be allowed"
    # What it must never do.
    for verb, resource, ns, group in (
        ("get", "secrets", run_namespace, ""),
        ("list", "secrets", None, ""),
        ("delete", "nodes", None, ""),
        ("list", "namespaces", None, ""),
        ("update", "reasoningruns", run_namespace, GROUP),  # spec belongs to Git / the user
        ("create", "reasoningruns", run_namespace, GROUP),
        ("delete", "reasoningruns", run_namespace, GROUP),
        ("create", "clusterrolebindings", None, "rbac.authorization.k8s.io"),
        ("create", "pods/exec", run_namespace, ""),
        ("delete", "persistentvolumeclaims", run_namespace, ""),
        ("create", "workloads", run_namespace, "kueue.x-k8s.io"),  # Kueue's own objects
        ("delete", "workloads", run_namespace, "kueue.x-k8s.io"),
        ("update", "customresourcedefinitions", None, "apiextensions.k8s.io"),
    ):
        assert not _allowed(sa, verb, resource, ns, group), f"{verb} {resource} should be forbidden"
    # And a real call gets a 403, not just a review saying so.
    for call in (
        lambda: k8s.CoreV1Api(sa).list_namespaced_secret(release_namespace),
        lambda: k8s.CoreV1Api(sa).delete_node("cpu-0"),
        lambda: k8s.CustomObjectsApi(sa).delete_namespaced_custom_object(GROUP, VERSION, run_namespace, PLURAL, NAME),
    ):
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403


def test_namespaced_release_watches_only_its_namespaces(
    control_plane: ControlPlane, chart_crd: str, namespace: str, claim_volume: None, tmp_path: Path
) -> None:
    release = Release(
        control_plane,
        "ro-ns",
        [
            "--values",
            str(VALUES_DIR / "default.yaml"),
            "--set",
            "watch.allNamespaces=false",
            "--set-json",
            f'watch.namespaces=["{namespace}"]',
        ],
    )
    release.install()
    op: ChartOperator | None = None
    try:
        with control_plane.api_client() as admin:
            rbac = k8s.RbacAuthorizationV1Api(admin)
            assert [
                r.metadata.namespace
                for r in rbac.list_role_for_all_namespaces(label_selector="app.kubernetes.io/instance=ro-ns").items
            ] == [namespace]
        op = release.operator(tmp_path)
        assert f"--namespace={namespace}" in op.args and "--all-namespaces" not in op.args
        op.start()
        _wait_ready(op)
        with control_plane.api_client() as admin:
            runs = Runs(admin, namespace, op)
            runs.create(EXAMPLE)
            # Without namespace-list rights kopf retries that listing 9 times (~1 min) before it falls back to
            # the namespaces it was given; `settings.scanning.disabled` in the operator would skip it.
            runs.wait_phase(NAME, "Curating", timeout=150)
            finish_job_pods(runs.core, namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
            runs.wait_phase(NAME, "Training")
        assert _forbidden(op.log_path.read_text(errors="replace")) == [], op.log_tail(80)
        with control_plane.api_client(op.kubeconfig) as sa:
            assert _allowed(sa, "list", "reasoningruns", namespace, GROUP)
            assert _allowed(sa, "create", "jobs", namespace, "batch")
            assert not _allowed(sa, "list", "reasoningruns", None, GROUP)  # not cluster-wide
            assert not _allowed(sa, "create", "jobs", "default", "batch")  # not outside its namespaces
            assert not _allowed(sa, "get", "secrets", namespace)
            with pytest.raises(ApiException) as err:
                k8s.BatchV1Api(sa).list_namespaced_job("default")
            assert err.value.status == 403
    finally:
        _delete_runs(control_plane, namespace)
        if op is not None:
            op.stop()
        release.uninstall()
