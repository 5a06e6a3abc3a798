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
