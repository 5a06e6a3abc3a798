"""Shared fixtures: a real control plane per test session and a fresh namespace per test.

Tests that use them carry ``pytestmark = pytest.mark.controlplane``.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_REPO_ROOT = str(Path(__file__).resolve().parents[1])
if _REPO_ROOT not in sys.path:  # `pytest` (not `python -m pytest`) does not put the repo root on sys.path
    sys.path.insert(0, _REPO_ROOT)

from kubernetes import client as k8s_client  # noqa: E402
from tests.support.controlplane import ControlPlane, build_binaries  # noqa: E402
from tests.support.fake_kubelet import wait_until  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "controlplane: needs the real control plane (etcd, kube-apiserver, controllers, scheduler, kwok)",
    )


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's control plane: ``.kubeconfig`` (admin), ``.api_client()``, ``.kubeconfig_for_*``."""
    bin_dir = build_binaries()  # builds on first use, then cached outside the repo
    with ControlPlane(bin_dir) as plane:
        yield plane


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace (with its ``default`` ServiceAccount in place); deleted after the test."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{os.urandom(3).hex()}"
    with control_plane.api_client() as api:
        core: Any = k8s_client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": name, "labels": {"reasoning.dev/test": "true"}}})

        def default_sa_exists() -> bool:
            return any(sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items)

        wait_until(default_sa_exists, timeout=30, what=f"ServiceAccount {name}/default")
        try:
            yield name
        finally:
            core.delete_namespace(name, propagation_policy="Background")
