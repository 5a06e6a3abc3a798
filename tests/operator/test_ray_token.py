"""The RayJob's token authentication against a real Ray 2.60 head (the venv's ray, one local node): the head
started with the env KubeRay v1.6.0's ``authOptions`` (mode token) gives every Ray container
(RAY_AUTH_MODE=token, RAY_AUTH_TOKEN from its per-cluster Secret), then the builder's own submitter script,
entrypoint swapped for a trivial driver that writes the summary. With that env it submits and writes the
termination message; without a token, or with a wrong one, Ray's dashboard refuses it.

Not checked here: KubeRay's pods (tests/e2e/test_kuberay.py), several nodes, a shared filesystem. The head is
stopped by killing the processes whose command line names this test's own temp dir (``ray stop`` would stop
every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.controlplane import free_port

from reasoning_operator.api.contract import TERMINATION_MESSAGE_PATH
from reasoning_operator.core import builders
from reasoning_operator.core.builders.ray import curation_entrypoint
from reasoning_operator.core.run import Run

CLUSTER = {"workers": 1, "workerResources": {"cpu": "1", "memory": "1Gi"}}
BIN = Path(sys.executable).parent
#: What ``ray start`` prints when its own startup deadlines pass (an overloaded machine), not an auth refusal.
_OVERLOADED = ("timed out during startup", "Failed to start the dashboard", "Timed out waiting for file")
SUMMARY = {"samplesRead": 3, "samplesWritten": 2, "dropped": {"language": 1}}


def _env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"] if "value" in e}


def _pids_naming(temp_dir: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if temp_dir.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            pass
    return [pid for pid in pids if pid != os.getpid()]


def _stop(temp_dir: str) -> None:
    """Ends the processes of this test's head only: those whose command line names its temp dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_naming(temp_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while _pids_naming(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def ray_head(make_run: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    run = Run.from_object(make_run(spec={"curation": {"cluster": CLUSTER}}))
    rj = builders.build_curation_rayjob(run)
    assert rj["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    home = tmp_path / "home"  # no ~/.ray/auth_token of the machine's user gets read
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}"}
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    # What KubeRay's SetContainerTokenAuthEnvVars sets: its Secret holds a random token (secrets.token_hex here).
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    temp_dir = tempfile.mkdtemp(prefix="rtok", dir="/tmp")  # short: Ray's unix sockets live under it
    dashboard = free_port()
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard,
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    start = [str(BIN / "ray"), "start", "--head", "--num-cpus", "1", "--include-dashboard", "true"]
    start += ["--dashboard-host", "127.0.0.1", "--node-ip-address", "127.0.0.1", "--temp-dir", temp_dir]
    start += ["--disable-usage-stats", *(str(a) for kv in ports.items() for a in kv)]
    began = time.monotonic()
    try:
        started = subprocess.run(
            start,
            env={
                **env,
                **auth,
                "RAY_DASHBOARD_STARTUP_TIMEOUT_S": "110",  # the one startup deadline Ray lets us widen
            },
            capture_output=True,
            text=True,
            timeout=150,
        )
        if started.returncode != 0:
            said = started.stdout + started.stderr
            if any(sign in said for sign in _OVERLOADED):
                # Ray's own startup deadlines (30 s for the raylet to register, the agent's port file) are
                # fixed; on a 2-core machine under load they pass before the head is up. Not a result.
                pytest.skip(f"the Ray head did not start in Ray's deadlines (load average {os.getloadavg()})")
            pytest.fail(f"ray start failed:\n{said}")
        yield {
            "run": run,
            "rayjob": rj,
            "env": env,
            "auth": auth,
            "address": f"127.0.0.1:{dashboard}",
            "tmp": tmp_path,
            "start_s": time.monotonic() - began,
        }
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _submitter_script(head: dict[str, Any]) -> tuple[str, dict[str, str], Path, Path]:
    """The builder's submitter command, its entrypoint and two paths pointed into tmp_path."""
    (sub,) = head["rayjob"]["spec"]["submitterPodTemplate"]["spec"]["containers"]
    assert sub["command"][:2] == ["bash", "-c"]
    script: str = sub["command"][2]
    tmp: Path = head["tmp"]
    summary, termination = tmp / "curated" / "summary.json", tmp / "termination-log"
    summary.parent.mkdir(exist_ok=True)
    driver = shlex.join(
        [sys.executable, "-c", f"import json; json.dump({SUMMARY!r}, open({str(summary)!r}, 'w'), indent=2)"]
    )
    replaced = {
        shlex.join(curation_entrypoint()): driver,
        shlex.quote(f"{head['run'].run_dir}/curated/summary.json"): shlex.quote(str(summary)),
        shlex.quote(TERMINATION_MESSAGE_PATH): shlex.quote(str(termination)),
    }
    for old, new in replaced.items():
        assert script.count(old) == 1, old
        script = script.replace(old, new)
    return script, _env(sub), summary, termination


def _submit(
    head: dict[str, Any], script: str, auth: dict[str, str], submission: str
) -> subprocess.CompletedProcess[str]:
    env = {**head["env"], **auth, "RAY_DASHBOARD_ADDRESS": head["address"], "RAY_JOB_SUBMISSION_ID": submission}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=180)


def test_the_submitter_with_the_token_submits_and_without_it_is_refused(ray_head: dict[str, Any]) -> None:
    script, sub_env, summary, termination = _submitter_script(ray_head)
    assert not [name for name in sub_env if name.startswith("RAY_AUTH")]  # KubeRay's to set, not ours
    auth = ray_head["auth"]

    refused = _submit(ray_head, script, {}, "no-token")
    assert refused.returncode != 0 and not termination.exists()
    assert "Missing authentication token" in refused.stdout + refused.stderr, refused.stderr[-2000:]

    forbidden = _submit(ray_head, script, {**auth, "RAY_AUTH_TOKEN": "0" * 64}, "wrong-token")
    assert forbidden.returncode != 0 and not termination.exists()
    assert "Invalid authentication token" in forbidden.stdout + forbidden.stderr, forbidden.stderr[-2000:]

    done = _submit(ray_head, script, auth, "with-token")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert json.loads(summary.read_text()) == SUMMARY
    assert termination.read_text() == json.dumps(SUMMARY, separators=(",", ":"), sort_keys=True)
    print(f"ray start took {ray_head['start_s']:.1f} s")
