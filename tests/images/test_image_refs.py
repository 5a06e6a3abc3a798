"""One source of truth for image names: the API's defaults, the chart and what `make images` tags agree."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml
from scripts.images.build import BY_NAME, IMAGES, archive_path, retag, torch_constraints

import reasoning_operator
from reasoning_operator.api import IMAGE_REGISTRY, ImagesSpec, default_image

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "reasoning-operator"
STAGES = ("curation", "training", "serving", "evaluation")


def test_make_images_tags_the_api_defaults() -> None:
    defaults = ImagesSpec()
    for stage in STAGES:
        assert (
            getattr(defaults, stage)
            == BY_NAME[stage].ref
            == f"{IMAGE_REGISTRY}/{stage}:{reasoning_operator.__version__}"
        )
    assert {image.name for image in IMAGES} == {"operator", *STAGES}


def test_chart_values_name_the_built_images() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == reasoning_operator.__version__  # an empty image.tag means appVersion
    tag = values["image"]["tag"] or chart["appVersion"]
    assert f"{values['image']['repository']}:{tag}" == BY_NAME["operator"].ref
    run_defaults = values["runDefaults"]["images"]
    assert {stage: run_defaults[stage] for stage in STAGES} == {stage: default_image(stage) for stage in STAGES}
    assert run_defaults["pullPolicy"] == ImagesSpec().pull_policy


def test_crd_defaults_are_the_built_images() -> None:
    crd = yaml.safe_load((REPO / "crds" / "reasoningruns.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    images = spec["images"]["properties"]
    for stage in STAGES:
        assert images[stage]["default"] == BY_NAME[stage].ref
        assert images[stage]["pattern"]  # the admission check of an override (tests/e2e/test_admission.py)


def test_project_version_is_the_image_tag() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == reasoning_operator.__version__


def test_every_extra_in_the_table_exists() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for image in IMAGES:
        assert image.dockerfile.is_file(), image.dockerfile
        assert set(image.extras) <= set(extras), image
        assert image.torch == any("torch" in _closure(extra) for extra in image.extras), image  # shared layer iff torch


def _closure(extra: str) -> list[str]:
    """The names the lock installs for an extra (torch among them or not)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    project = next(p for p in lock["package"] if p["name"] == "reasoning-operator")
    names, todo = set(), [d["name"] for d in project["optional-dependencies"][extra]]
    packages = {p["name"]: p for p in lock["package"]}
    while todo:
        name = todo.pop()
        if name not in names:
            names.add(name)
            todo.extend(d["name"] for d in packages[name].get("dependencies", []))
    return sorted(names)


def test_the_lock_holds_one_torch_for_every_image() -> None:
    """The shared torch layer is built once from the lock's torch; a second torch (e.g. a serving backend pinning
    another one) would leave an image whose `uv sync` replaces the layer's torch with several GB of its own."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    torches = [p["version"] for p in lock["package"] if p["name"] == "torch"]
    assert len(torches) == 1, torches


def test_operator_image_carries_no_torch_or_job_extras() -> None:
    assert BY_NAME["operator"].extras == ("operator",)
    assert "torch" not in _closure("operator")


def test_torch_layer_holds_torch_and_its_closure_only() -> None:
    pins = torch_constraints()
    names = {line.split("==")[0] for line in pins.splitlines()}
    assert "torch" in names and "nvidia-cublas" in names  # CUDA runtime wheels: the node needs only the driver
    assert not names & {"transformers", "ray", "peft", "nvidia-pytriton", "reasoning-operator"}


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        ("registry.example.com:5000/team", "registry.example.com:5000/team/serving:0.1.0"),
        ("localhost:5000/", "localhost:5000/serving:0.1.0"),
    ],
)
def test_push_retags_into_the_registry(registry: str, expected: str) -> None:
    assert retag("ghcr.io/reasoning-operator/serving:0.1.0", registry) == expected


def test_archive_names_follow_the_refs() -> None:
    assert archive_path(BY_NAME["serving"], Path("/x")) == Path(f"/x/serving-{reasoning_operator.__version__}.tar")
