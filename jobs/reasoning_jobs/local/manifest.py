"""A ReasoningRun manifest read from a file, validated by the same models the apiserver's schema comes from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reasoning_operator.api import API_VERSION, KIND, ReasoningRunSpec

#: Asks the local runner to generate the embedded default's dataset, model and benchmarks where the spec's
#: paths point, when they are missing: `quickstart` or `smollm2` (local/assets.py).
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


def apply_overrides(spec: dict[str, Any], overrides: list[str], source: Path) -> dict[str, Any]:
    """`section.field=value` (the manifest's camelCase names, value parsed as YAML) set into a copy of `spec`:
    the same manifest runs a few CPU steps or the full recipe (`--set training.maxSteps=4`)."""
    import copy

    result = copy.deepcopy(spec)
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = [p for p in key.strip().split(".") if p]
        if not sep or not parts:
            raise ManifestError(f"{source}: --set {item!r}: expected section.field=value, e.g. training.maxSteps=4")
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ManifestError(f"{source}: --set {item!r}: spec.{part} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ManifestError(f"{source}: --set {item!r}: value is not valid YAML: {err}") from err
    return result


def load_manifest(path: str | Path, overrides: list[str] | None = None) -> Manifest:
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
        spec = ReasoningRunSpec.model_validate(apply_overrides(obj.get("spec") or {}, overrides or [], source))
    except ValidationError as err:
        raise ManifestError(f"{source}: {_describe(err)}") from err
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    return Manifest(name=name, spec=spec, annotations=annotations)
