"""Helpers for the chart tests: the pinned helm binary (built once by scripts/tools/helm.sh) and rendering."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "reasoning-operator"
VALUES_DIR = Path(__file__).resolve().parent / "values"
VALUES_FILES = sorted(VALUES_DIR.glob("*.yaml"))
#: The control plane's version (scripts/controlplane/build.sh): what templates render and validate for.
KUBE_VERSION = "1.36.3"


@functools.cache
def helm_binary() -> Path:
    """Build helm from the Go module proxy on first use (a few minutes), then reuse the cached binary."""
    out = subprocess.run(
        [str(REPO / "scripts" / "tools" / "helm.sh")], check=True, capture_output=True, text=True, timeout=1800
    )
    return Path(out.stdout.strip().splitlines()[-1])


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def render(values: Path | None = None, *extra: str, namespace: str = "reasoning-system") -> list[dict[str, Any]]:
    """`helm template` (CRDs included) -> the manifests as dicts, empty documents dropped."""
    args = ["template", "ro", str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION, "--include-crds"]
    if values is not None:
        args += ["--values", str(values)]
    out = helm(*args, *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]
