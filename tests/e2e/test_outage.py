"""The apiserver away for 100 s (issue 24, part 4): the operator process waits it out instead of exiting
once kopf's default connection retries (~54 s) run out, and carries on with the run when it returns. Its
health endpoint stays honest: /healthz (liveness) 200 throughout, so the kubelet would not restart it, and
/readyz 503 while the apiserver is away, 200 again once it answers.

The apiserver is stopped and started again through the control plane's own process handling (the same
binary, flags, certificates and etcd, so the cluster state survives); the controller-manager and scheduler
run without leader election, so they wait it out too."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import yaml
from tests.e2e.conftest import Operator, Runs
from tests.support.controlplane import ControlPlane
from tests.support.fake_kubelet import finish_job_pods, wait_until

pytestmark = pytest.mark.controlplane
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "reasoningrun.yaml").read_text())
OUTAGE_SECONDS = 100


def _stop_apiserver(control_plane: ControlPlane) -> None:
    proc = next(p for p in control_plane._processes if p.name == "kube-apiserver" and p.popen.poll() is None)
    proc.popen.send_signal(signal.SIGKILL)  # abrupt, like a lost control-plane node (SIGTERM drains for > 30 s)
    proc.popen.wait(timeout=30)
    control_plane._processes.remove(proc)


def _start_apiserver(control_plane: ControlPlane) -> None:
    control_plane._start_apiserver()
    deadline = time.monotonic() + 60
    control_plane._wait_http(
        "kube-apiserver", f"{control_plane.server}/readyz", deadline, None, tls=control_plane._admin_tls()
    )


def test_the_operator_waits_out_a_100_s_apiserver_outage(
    control_plane: ControlPlane, runs: Runs, operator: Operator
) -> None:
    name = "outage"
    manifest = json.loads(json.dumps(EXAMPLE))
    manifest["metadata"]["name"] = name
    runs.create(manifest)
    runs.wait_phase(name, "Curating")
    wait_until(lambda: operator.probe("/readyz") == 200, timeout=30, what="operator ready before the outage")
    _stop_apiserver(control_plane)
    readiness: list[int] = []
    try:
        stopped = time.monotonic()
        while time.monotonic() - stopped < OUTAGE_SECONDS:
            assert operator.alive(), "the operator exited during the outage:\n" + operator.log_tail()
            assert operator.probe("/healthz") == 200, "liveness failed while only the apiserver was away"
            readiness.append(operator.probe("/readyz"))
            time.sleep(5)
    finally:
        _start_apiserver(control_plane)
    assert operator.alive(), operator.log_tail()
    # Not ready for (nearly) the whole outage: the first probes may come before a watch notices.
    assert readiness[2:] and set(readiness[2:]) == {503}, readiness
    wait_until(lambda: operator.probe("/readyz") == 200, timeout=60, what="operator ready after the outage")
    # It carries on: the curation pod finishes and the run moves to training, reconciled by the same process.
    finish_job_pods(
        runs.core,
        runs.namespace,
        f"{name}-curation",
        "Succeeded",
        json.dumps({"samplesRead": 1, "samplesWritten": 1, "dropped": {}}),
        timeout=120,
    )
    runs.wait_phase(name, "Training", timeout=120)
    wait_until(operator.alive, timeout=1, what="operator still running")
