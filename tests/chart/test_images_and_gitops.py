"""Dockerfiles linted with hadolint from PyPI (tests/images builds on them and runs the images), and the
GitOps examples checked for what they point at."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripts.images.build import BY_NAME

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
HADOLINT = Path(sys.executable).parent / "hadolint"
DOCKERFILES = sorted([*BY_NAME, "torch"])
GITOPS = REPO / "examples" / "gitops"


def test_every_image_has_a_dockerfile() -> None:
    assert {p.parent.name for p in IMAGES.glob("*/Dockerfile")} == set(DOCKERFILES)


@pytest.mark.parametrize("image", DOCKERFILES)
def test_dockerfile_passes_hadolint(image: str) -> None:
    dockerfile = IMAGES / image / "Dockerfile"
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(BY_NAME))
def test_dockerfile_builds_on_the_local_base_from_the_lock_and_runs_unprivileged(image: str) -> None:
    text = (IMAGES / image / "Dockerfile").read_text()
    table = BY_NAME[image]
    assert re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE) == ["${BASE}"]
    (base,) = re.findall(r"^ARG BASE=(\S+)", text, flags=re.MULTILINE)
    assert base.startswith("localhost/reasoning-operator/" + ("torch:" if table.torch else "base:")), base
    (extras,) = re.findall(r'^ARG EXTRAS="([^"]*)"', text, flags=re.MULTILINE)
    assert extras == " ".join(f"--extra {e}" for e in table.extras)  # the default is the table's row
    syncs = re.findall(r"uv sync [^\n]*", text)
    assert len(syncs) == 2 and all("--frozen" in s and "${EXTRAS}" in s for s in syncs), syncs  # the lock, always
    assert "--no-install-project" in syncs[0]  # dependencies layer first, the project's code last
    assert "pip install" not in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"  # runAsNonRoot can check
    assert f"images/{image}/Dockerfile" in text  # the build command is documented in the file


def test_images_readme_lists_every_image() -> None:
    readme = (IMAGES / "README.md").read_text()
    for image in BY_NAME.values():
        assert f"images/{image.name}/Dockerfile" in readme and image.ref in readme


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_argocd_applications_point_at_the_chart_and_the_example_run() -> None:
    docs = [d for p in (GITOPS / "argocd").glob("*.yaml") for d in _docs(p)]
    apps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Application"}
    kustomization = yaml.safe_load((GITOPS / "argocd" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == ["operator.yaml", "runs.yaml"]
    operator, runs = apps["reasoning-operator"], apps["reasoning-runs"]
    assert (REPO / operator["spec"]["source"]["path"] / "Chart.yaml").is_file()
    assert (REPO / runs["spec"]["source"]["path"] / runs["spec"]["source"]["directory"]["include"]).is_file()
    waves = [int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for a in (operator, runs)]
    assert waves[0] < waves[1]  # the chart (with the CRD) before the runs


def test_flux_layout_installs_the_chart_then_the_example_run() -> None:
    flux = GITOPS / "flux"
    objs = {(d["kind"], d["metadata"]["name"]): d for p in flux.rglob("*.yaml") for d in _docs(p) if "metadata" in d}
    release = objs[("HelmRelease", "reasoning-operator")]
    assert (REPO / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").is_file()
    assert release["spec"]["install"]["crds"] == "CreateReplace"
    operator = objs[("Kustomization", "reasoning-operator")]
    assert (REPO / operator["spec"]["path"] / "helmrelease.yaml").is_file()
    runs = objs[("Kustomization", "reasoning-runs")]
    assert runs["spec"]["dependsOn"] == [{"name": "reasoning-operator"}]
    assert (REPO / runs["spec"]["path"] / "reasoningrun.yaml").is_file()
    # The runs' source keeps only examples/reasoningrun.yaml, so Flux's generated kustomization holds just it.
    source = objs[("GitRepository", runs["spec"]["sourceRef"]["name"])]
    assert "!/examples/reasoningrun.yaml" in source["spec"]["ignore"].splitlines()
    for kustomization in flux.rglob("kustomization.yaml"):
        for resource in yaml.safe_load(kustomization.read_text())["resources"]:
            assert (kustomization.parent / resource).is_file(), f"{kustomization}: {resource}"
