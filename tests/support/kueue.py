"""The real Kueue controller against the test control plane, without webhooks or cert-manager.

Built by scripts/kueue/build.sh from the Go module proxy (cached outside the repository). Kueue is run as a
plain process with the admin kubeconfig and:
- its CRDs from the module source (config/components/crd/bases: no conversion webhook; storage v1beta2);
- internal cert management off and no webhook configurations installed: the apiserver never calls its
  webhooks (the reasoning operator already creates queued Jobs suspended, which is all Kueue's Job webhook
  would add), but its webhook server still starts, so it gets a self-signed certificate in `certDir`;
- its metrics server reads a certificate from the fixed path /etc/kueue/metrics/certs when internal cert
  management is off: the process runs in a private mount namespace with an overlay on /etc that holds one,
  so nothing is written to the host's /etc.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from kubernetes import client as k8s

from .controlplane import ControlPlane, free_port

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "kueue" / "build.sh"
NAMESPACE = "kueue-system"


class KueueError(RuntimeError):
    pass


def build_kueue() -> Path:
    """Run scripts/kueue/build.sh (a no-op once cached); returns the directory with bin/kueue and crds/."""
    env = dict(os.environ)
    if shutil.which("go", path=env.get("PATH")) is None and Path("/usr/local/go/bin/go").exists():
        env["PATH"] = env.get("PATH", "") + os.pathsep + "/usr/local/go/bin"
    proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise KueueError(f"{BUILD_SCRIPT} failed (exit {proc.returncode})")
    return Path(lines[-1])


def _self_signed(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=kueue",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(directory / "tls.key"),
            "-out",
            str(directory / "tls.crt"),
        ],
        check=True,
        capture_output=True,
    )


def install_crds(api: k8s.ApiClient, crd_dir: Path) -> None:
    """Create Kueue's CRDs (once per control plane) and wait until they are Established."""
    ext = k8s.ApiextensionsV1Api(api)
    names = []
    for path in sorted(crd_dir.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        names.append(body["metadata"]["name"])
        try:
            ext.create_custom_resource_definition(body)
        except k8s.ApiException as err:
            if err.status != 409:
                raise
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            got = ext.read_custom_resource_definition(name)
            if any(c.type == "Established" and c.status == "True" for c in got.status.conditions or []):
                break
            if time.monotonic() > deadline:
                raise KueueError(f"CRD {name} not Established")
            time.sleep(0.3)


class Kueue:
    """`kueue --config=…` as a subprocess (context manager); `log_tail()` for failure messages."""

    def __init__(self, plane: ControlPlane, build_dir: Path, work_dir: Path) -> None:
        self.plane = plane
        self.binary = build_dir / "bin" / "kueue"
        self.crds = build_dir / "crds"
        self.work = work_dir
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = work_dir / "kueue.log"

    def _config(self) -> Path:
        config: dict[str, Any] = {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": NAMESPACE,
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "metrics": {"bindAddress": f"127.0.0.1:{free_port()}"},
            "webhook": {"port": free_port(), "host": "127.0.0.1", "certDir": str(self.work / "webhook-certs")},
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "integrations": {"frameworks": ["batch/job"]},
        }
        path = self.work / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> None:
        with self.plane.api_client() as api:
            install_crds(api, self.crds)
            core = k8s.CoreV1Api(api)
            try:
                core.create_namespace({"metadata": {"name": NAMESPACE}})
            except k8s.ApiException as err:
                if err.status != 409:
                    raise
        self.work.mkdir(parents=True, exist_ok=True)
        _self_signed(self.work / "webhook-certs")
        metrics = self.work / "metrics-certs"
        _self_signed(metrics)
        upper, scratch = self.work / "etc-upper", self.work / "etc-work"
        (upper / "kueue" / "metrics").mkdir(parents=True, exist_ok=True)
        scratch.mkdir(exist_ok=True)
        shutil.copytree(metrics, upper / "kueue" / "metrics" / "certs", dirs_exist_ok=True)
        script = (
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={upper},workdir={scratch} /etc && "
            f'exec "{self.binary}" --config={self._config()} --feature-gates=VisibilityOnDemand=false'
        )
        env = {**os.environ, "KUBECONFIG": str(self.plane.kubeconfig)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 90
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise KueueError(f"kueue did not get ready (exit {self.proc.returncode}):\n{self.log_tail()}")
            time.sleep(0.5)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Kueue:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
