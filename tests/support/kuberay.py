"""KubeRay's CRDs at a pinned version, from the Go module proxy (the module zip holds ``config/crd/bases``).

Fetched once with ``go mod download`` into the shared Go module cache, then copied to
``~/.cache/reasoning-operator/kuberay/<version>/crds`` (``$REASONING_CACHE``): later runs read only that copy,
so the gate pays the download (~4 MB, seconds) once per machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

MODULE = "github.com/ray-project/kuberay/ray-operator"
VERSION = "v1.5.0"
CRD_FILES = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml")
CACHE_ROOT = Path(os.environ.get("REASONING_CACHE", Path.home() / ".cache" / "reasoning-operator"))


def _go() -> str:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        raise RuntimeError("go is needed once to fetch KubeRay's CRDs from the Go module proxy")
    return found


def crd_paths(version: str = VERSION) -> list[Path]:
    """The RayCluster and RayJob CRD files of KubeRay `version`, fetched on first use."""
    target = CACHE_ROOT / "kuberay" / version / "crds"
    paths = [target / name for name in CRD_FILES]
    if all(p.is_file() for p in paths):
        return paths
    proc = subprocess.run(
        [_go(), "mod", "download", "-json", f"{MODULE}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=CACHE_ROOT if CACHE_ROOT.is_dir() else None,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go mod download {MODULE}@{version} failed: {proc.stderr or proc.stdout}")
    source = Path(json.loads(proc.stdout)["Dir"]) / "config" / "crd" / "bases"
    staging = target.with_name(f"crds.{os.getpid()}")
    staging.mkdir(parents=True, exist_ok=True)
    for name in CRD_FILES:
        shutil.copyfile(source / name, staging / name)  # the module cache's copies are read-only
    if target.exists():
        shutil.rmtree(staging)
    else:
        staging.rename(target)
    return paths
