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
from tests.support.controlplane import ControlPlane, build_binaries, ensure_default_service_account  # noqa: E402
from tests.support.gate import wait_for_build  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "controlplane: needs the real control plane (etcd, kube-apiserver, controllers, scheduler, kwok)",
    )
    config.addinivalue_line("markers", "needs_build(*names): waits for the gate's background builds NAMES first")


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

        ensure_default_service_account(core, name)
        try:
            yield name
        finally:
            core.delete_namespace(name, propagation_policy="Background")


#: The gate's background builds (scripts/check.sh) that a test needs, by the fixtures it uses.
_BUILDS_BY_FIXTURE: dict[str, tuple[str, ...]] = {
    "control_plane": ("controlplane",),
    "node_plane": ("controlplane", "node", "images"),
    "kueue": ("kueue",),
    "kuberay": ("kuberay",),  # tests/node/test_ray_curation_on_node.py's KubeRay operator
    "engine": ("images",),
}
_BUILD_ERRORS = pytest.StashKey[list[str]]()


def _builds_needed(item: pytest.Item) -> list[str]:
    names = [build for f in getattr(item, "fixturenames", ()) for build in _BUILDS_BY_FIXTURE.get(f, ())]
    names += [str(name) for mark in item.iter_markers("needs_build") for name in mark.args]
    return list(dict.fromkeys(names))


#: The longest test files, longest first (from the gate's --durations; scripts/check.sh prints them): xdist
#: hands them out first, so the suite does not end waiting on one of them. The rest keep their order.
LONGEST_FIRST = (
    "tests/node/",  # the real-node tier, one worker (below)
    "tests/jobs/local/test_quickstart.py",
    "tests/jobs/curate/test_curate_pipeline.py",
    "tests/jobs/export/test_export_job.py",
    "tests/jobs/local/test_smollm2_pipeline.py",
    "tests/jobs/serve/test_serve_vllm_cpu.py",
    "tests/images/test_images_run.py",
    "tests/jobs/train/test_train_tracking.py",
    "tests/jobs/train/test_train_job.py",  # split by test (below)
)
#: Files whose tests share no module fixture and take minutes each: xdist spreads them test by test.
SPLIT_BY_TEST = ("tests/jobs/train/test_train_job.py",)


def _relative(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def _priority(path: str) -> int:
    return next((i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest files first (a stable sort: a file stays contiguous, so its module fixtures start once)."""
    items.sort(key=lambda item: _priority(_relative(item.nodeid)))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Wait for the builds the test needs here, before pytest-timeout's clock for the test starts."""
    item.stash[_BUILD_ERRORS] = [error for name in _builds_needed(item) if (error := wait_for_build(name))]
    yield


@pytest.fixture(autouse=True)
def _gate_builds(request: pytest.FixtureRequest) -> None:
    if errors := request.node.stash.get(_BUILD_ERRORS, []):
        pytest.fail("\n\n".join(errors), pytrace=False)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's per-file scheduling (`--dist loadfile`), in collection order (`--no-loadscope-reorder`), except:
    the real-node tier (tests/node/) goes to one worker as a unit, since its session fixture starts the machine's
    one kubelet, which two workers cannot both run; the files of SPLIT_BY_TEST go test by test."""
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = _relative(nodeid)
            if path.startswith("tests/node/"):
                return "tests/node"
            return nodeid if path in SPLIT_BY_TEST else path

    return Scheduling(config, log)
