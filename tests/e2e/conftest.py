"""Fixtures for operator end-to-end tests: the CRD installed, volumes to bind, the operator as a real
process (`reasoning operator`), and helpers to watch a run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from tests.support.controlplane import ControlPlane, free_port
from tests.support.fake_kubelet import wait_until

from reasoning_operator.api import GROUP, PLURAL, VERSION
from reasoning_operator.api.crd import CRD_PATHS

REPO = Path(__file__).resolve().parents[2]


class Operator:
    """`reasoning operator` in a subprocess; kill() is SIGKILL, like a node loss or OOM kill."""

    def __init__(self, kubeconfig: Path, log_path: Path, shards: int = 1) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.shards = shards
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "operator"), str(REPO / "jobs"), env.get("PYTHONPATH", "")])
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reasoning_operator.cli",
                "operator",
                "--all-namespaces",
                "--kubeconfig",
                str(self.kubeconfig),
                "--metrics-port",
                str(self.metrics_port),
                "--health-port",
                str(self.health_port),
                "--resync-seconds",
                "2",
                "--shards",
                str(self.shards),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def probe(self, path: str) -> int:
        """HTTP status of the operator's /healthz or /readyz (0 when it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def crd(control_plane: ControlPlane) -> dict[str, Any]:
    body = yaml.safe_load(CRD_PATHS[0].read_text())
    with control_plane.api_client() as api:
        ext = k8s.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition(body)

        def established() -> bool:
            got = ext.read_custom_resource_definition(body["metadata"]["name"])
            return any(c.type == "Established" and c.status == "True" for c in got.status.conditions or [])

        wait_until(established, timeout=30, what="CRD Established")
        # Volumes for the runs' claims to bind to (no provisioner in this cluster).
        core = k8s.CoreV1Api(api)
        for i in range(40):
            core.create_persistent_volume(
                {
                    "metadata": {"name": f"pv-{i}"},
                    "spec": {
                        "capacity": {"storage": "10Ti"},
                        "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": f"/tmp/pv-{i}"},
                    },
                }
            )
    return body


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, crd: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(control_plane.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[k8s.ApiClient]:
    with control_plane.api_client() as client:
        yield client


class Runs:
    """Create, read and wait on ReasoningRuns in one namespace."""

    def __init__(self, api: k8s.ApiClient, namespace: str, operator: Operator | None) -> None:
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)
        self.batch = k8s.BatchV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        self.namespace = namespace
        self.operator = operator

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, manifest
        )
        return obj

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return obj

    def wait(
        self, name: str, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def probe() -> dict[str, Any] | None:
            nonlocal last
            last = self.get(name)
            return last if predicate(last) else None

        try:
            return wait_until(probe, timeout=timeout, interval=0.3, what=what)
        except Exception as err:
            tail = self.operator.log_tail() if self.operator else ""
            raise AssertionError(f"{what}: last status {last.get('status')}\noperator log:\n{tail}") from err

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        return self.wait(
            name, lambda o: (o.get("status") or {}).get("phase") == phase, f"{name} phase {phase}", timeout
        )

    def jobs(self) -> list[Any]:
        return list(self.batch.list_namespaced_job(self.namespace).items)


@pytest.fixture
def runs(api: k8s.ApiClient, namespace: str, operator: Operator) -> Runs:
    return Runs(api, namespace, operator)


@pytest.fixture
def runs_no_operator(api: k8s.ApiClient, namespace: str, crd: dict[str, Any]) -> Runs:
    return Runs(api, namespace, None)


def wait_seconds(seconds: float) -> None:
    time.sleep(seconds)
