"""Dockerfiles (unbuildable here: no container engine) linted with hadolint from PyPI, and the GitOps
examples checked for what they point at."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
HADOLINT = Path(sys.executable).parent / "hadolint"
#: image -> (extras it must install, base image it must start from)
EXPECTED = {
    "operator": ("operator", "python:3.11"),
    "curation": ("curate", "python:3.11"),
    "training": ("train,train-gpu,train-nemo", "nvcr.io/nvidia/pytorch:"),
    "serving": (None, "nvcr.io/nvidia/tritonserver:"),
    "evaluation": ("evaluate", "python:3.11"),
}
GITOPS = REPO / "examples" / "gitops"


def test_every_image_has_a_dockerfile() -> None:
    assert {p.parent.name for p in IMAGES.glob("*/Dockerfile")} == set(EXPECTED)


@pytest.mark.parametrize("image", sorted(EXPECTED))
def test_dockerfile_passes_hadolint(image: str) -> None:
    dockerfile = IMAGES / image / "Dockerfile"
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("image", sorted(EXPECTED))
def test_dockerfile_pins_its_base_installs_its_extra_and_runs_unprivileged(image: str) -> None:
    text = (IMAGES / image / "Dockerfile").read_text()
    extras, base = EXPECTED[image]
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases and all(b.startswith(base) for b in bases), bases
    assert all(re.search(r":\d[\w.-]*$", b) and not b.endswith(":latest") for b in bases), bases
    installs = re.findall(r'pip install --no-cache-dir "\.([^"]*)"', text)
    assert installs == [f"[{extras}]" if extras else "${EXTRAS:+[$EXTRAS]}"], installs
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert users[-1].split(":")[0].isdigit()  # numeric, so Kubernetes' runAsNonRoot can check it
    assert f"images/{image}/Dockerfile" in text  # the build command is documented in the file


def test_pyproject_has_the_extras_the_images_install() -> None:
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for wanted, _ in EXPECTED.values():
        for extra in (wanted or "").split(","):
            assert not extra or extra in extras, extra


def test_chart_and_api_default_to_the_images_built_here() -> None:
    from reasoning_operator.api import ImagesSpec

    values = yaml.safe_load((REPO / "charts" / "reasoning-operator" / "values.yaml").read_text())
    chart = yaml.safe_load((REPO / "charts" / "reasoning-operator" / "Chart.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/reasoning-operator/operator"
    for stage in ("curation", "training", "serving", "evaluation"):
        assert getattr(ImagesSpec(), stage) == f"ghcr.io/reasoning-operator/{stage}:{chart['appVersion']}"
    readme = (IMAGES / "README.md").read_text()
    assert "unbuilt" in readme.lower() or "not been built" in readme.lower()
    for image in EXPECTED:
        assert f"images/{image}/Dockerfile" in readme


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
