"""KubeRay's CRDs at a pinned version, from the Go module proxy (the module zip holds ``config/crd/bases``).

Fetched once with ``go mod download`` into the shared Go module cache, then copied to
``~/.cache/reasoning-operator/kuberay/<version>/crds`` (``$REASONING_CACHE``): later runs read only that copy,
so the gate pays the download (~4 MB, seconds) once per machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from tests.support.controlplane import free_port
from tests.support.fake_kubelet import wait_until

MODULE = "github.com/ray-project/kuberay/ray-operator"
VERSION = "v1.6.0"
#: RayService too: KubeRay's operator runs its controller and stops without that CRD.
CRD_FILES = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml")
CACHE_ROOT = Path(os.environ.get("REASONING_CACHE", Path.home() / ".cache" / "reasoning-operator"))


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise RuntimeError("go is needed once to fetch KubeRay's CRDs from the Go module proxy")
    return found


def _outside_any_module() -> Path:
    """A directory with no go.mod above it, so ``go mod download`` fetches into the shared module cache."""
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    return CACHE_ROOT


def _module_dir(version: str) -> Path:
    """The module's source in the shared Go module cache, downloaded through the proxy on first use."""
    proc = subprocess.run(
        [_go(), "mod", "download", "-json", f"{MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=_outside_any_module(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{version} failed: {proc.stderr or proc.stdout}")
    return Path(json.loads(proc.stdout)["Dir"])


def crd_paths(version: str = VERSION) -> list[Path]:
    """KubeRay `version`'s CRD files (RayCluster, RayJob, RayService), fetched on first use."""
    target = CACHE_ROOT / "kuberay" / version / "crds"
    paths = [target / name for name in CRD_FILES]
    if all(p.is_file() for p in paths):
        return paths
    source = _module_dir(version) / "config" / "crd" / "bases"
    staging = target.with_name(f"crds.{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    for name in CRD_FILES:
        shutil.copyfile(source / name, staging / name)  # the module cache's copies are read-only
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return paths


def operator_binary(version: str = VERSION, *, build: bool = True) -> Path | None:
    """KubeRay's operator (``go build`` of the module's main package), cached under the same directory.
    With ``build=False``: the cached binary, or None when there is none."""
    binary = CACHE_ROOT / "kuberay" / version / "bin" / "ray-operator"
    if binary.is_file() or not build:
        return binary if binary.is_file() else None
    source = _module_dir(version)
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"ray-operator.{os.getpid()}")
    subprocess.run(["nice", "-n", "10", _go(), "build", "-o", str(partial), "."], cwd=source, check=True)
    partial.rename(binary)
    return binary


def install_crds(api: Any) -> list[str]:
    """KubeRay's CRDs in the cluster behind ``api`` (an existing one kept), once Established; their names."""
    ext = k8s.ApiextensionsV1Api(api)
    names = []
    for path in crd_paths():
        body = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as err:
            if err.status != 409:
                raise
        names.append(body["metadata"]["name"])

    def established() -> bool:
        return all(
            any(
                c.type == "Established" and c.status == "True"
                for c in ext.read_custom_resource_definition(n).status.conditions or []
            )
            for n in names
        )

    wait_until(established, timeout=60, what="KubeRay's CRDs Established")
    return names


@contextlib.contextmanager
def running_operator(binary: Path, kubeconfig: Path, log: Path, *flags: str) -> Iterator[Path]:
    """KubeRay's operator as a process against ``kubeconfig`` (no leader election, loopback metrics and
    probes), its output in ``log``; yields the log and stops the process afterwards."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "--enable-leader-election=false",
                *flags,
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-probe-bind-address=127.0.0.1:{free_port()}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
