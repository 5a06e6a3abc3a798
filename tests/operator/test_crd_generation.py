"""The checked-in CRD YAML is exactly what the models generate, and it is a structural schema."""

from __future__ import annotations

from typing import Any

import yaml

from reasoning_operator.api import crd


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _walk(value, f"{path}[{i}]")
    return found


def test_checked_in_crds_are_fresh() -> None:
    text = crd.render()
    for path in crd.CRD_PATHS:
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `reasoning crds`"


def test_schema_is_structural() -> None:
    schema = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "anyOf" not in node and "allOf" not in node, path
        assert "title" not in node, path
        if "properties" in node and isinstance(node["properties"], dict) and path.endswith(("spec", "status")):
            assert node.get("type") == "object", path
        assert node.get("additionalProperties") is not False, path


def test_defaults_and_rules_are_in_the_schema() -> None:
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    training = spec["properties"]["training"]
    assert training["default"]["lora"]["rank"] == 64
    assert training["properties"]["globalBatchSize"]["default"] == 256
    rules = [r["rule"] for r in training["x-kubernetes-validations"]]
    assert "self.globalBatchSize % self.microBatchSize == 0" in rules
    assert "self == oldSelf" in rules


def test_printer_columns() -> None:
    version = yaml.safe_load(crd.render())["spec"]["versions"][0]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Phase", "Stage", "Progress", "Accuracy", "Age"]
    assert version["subresources"] == {"status": {}}


CONFIG_MAP_LIMIT = 1024 * 1024  # the apiserver's limit on a ConfigMap's data


def _max_bytes(node: dict[str, Any], path: str) -> int:
    """An upper bound on the YAML size of any value the schema admits (keys, quoting and indent included)."""
    kind = node.get("type")
    if "enum" in node:
        return max(len(str(v)) for v in node["enum"]) + 2
    if kind == "string":
        assert "maxLength" in node, f"{path}: unbounded string"
        return 4 * int(node["maxLength"]) + 2  # worst-case escaping
    if kind in ("integer", "number"):
        return 32
    if kind == "boolean":
        return 5
    if kind == "array":
        assert "maxItems" in node, f"{path}: unbounded list"
        return int(node["maxItems"]) * (_max_bytes(node["items"], f"{path}[]") + 64)
    if kind == "object" and "additionalProperties" in node:
        assert "maxProperties" in node, f"{path}: unbounded map"
        key = 63 * 4 + 2
        return int(node["maxProperties"]) * (key + _max_bytes(node["additionalProperties"], f"{path}{{}}") + 64)
    if kind == "object":
        props = node.get("properties") or {}
        return sum(len(k) + 64 + _max_bytes(v, f"{path}.{k}") for k, v in props.items())
    raise AssertionError(f"{path}: unknown schema {node}")


def test_every_value_that_reaches_a_stage_config_is_bounded_so_the_config_map_fits() -> None:
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    # spec.images is not in any stage config (the pods' image fields), so not in the ConfigMap.
    sections = {k: v for k, v in spec["properties"].items() if k != "images"}
    bounds = {k: _max_bytes(v, f"spec.{k}") for k, v in sections.items()}
    # The ConfigMap holds each stage's config; spec.model goes into two of them, every other section into one.
    worst = sum(bounds.values()) + bounds["model"] + 4 * 4096  # + paths, ports and model names per config
    assert worst < CONFIG_MAP_LIMIT, bounds


def test_lists_are_sets_and_map_keys_are_checked_by_cel() -> None:
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["evaluation"]["properties"]["benchmarks"]["x-kubernetes-list-type"] == "set"
    assert spec["training"]["properties"]["acceptedGpuProducts"]["x-kubernetes-list-type"] == "set"
    caps = spec["curation"]["properties"]["categoryCaps"]
    assert "patternProperties" not in caps and "propertyNames" not in caps
    assert "k.matches(" in caps["x-kubernetes-validations"][0]["rule"]
