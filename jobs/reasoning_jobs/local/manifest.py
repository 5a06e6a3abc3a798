"""A ReasoningRun manifest read from a file, validated by the same models the apiserver's schema comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reasoning_operator.api import API_VERSION, KIND, ReasoningRunSpec

#: Asks the local runner to generate the embedded default's dataset, model and benchmarks where the spec's
#: paths point, when they are missing. Only `quickstart` exists.
LOCAL_ASSETS_ANNOTATION = "reasoning-operator.dev/local-assets"


class ManifestError(ValueError):
    """The manifest cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class Manifest:
    name: str
    spec: ReasoningRunSpec
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def local_assets(self) -> str | None:
        return self.annotations.get(LOCAL_ASSETS_ANNOTATION)


def _describe(err: ValidationError) -> str:
    return "; ".join(f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())


def load_manifest(path: str | Path) -> Manifest:
    source = Path(path)
    if not source.is_file():
        raise ManifestError(f"{source}: no such manifest file")
    try:
        obj: Any = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ManifestError(f"{source}: not valid YAML: {err}") from err
    if not isinstance(obj, dict):
        raise ManifestError(f"{source}: expected a ReasoningRun object, got {type(obj).__name__}")
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != KIND:
        raise ManifestError(
            f"{source}: apiVersion/kind must be {API_VERSION}/{KIND}, got {obj.get('apiVersion')}/{obj.get('kind')}"
        )
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{source}: metadata.name is required")
    try:
        spec = ReasoningRunSpec.model_validate(obj.get("spec") or {})
    except ValidationError as err:
        raise ManifestError(f"{source}: {_describe(err)}") from err
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    return Manifest(name=name, spec=spec, annotations=annotations)
