"""Admission and the children agree on every field, not only on the cases someone thought of: each spec field
(walked from the generated CRD's schema) and the run name are set in turn to hostile values of their type
(empty, spaces, upper case, slashes, shell, unicode, over-long, zero, negative, beyond 64 bits, duplicates).
The apiserver either refuses the run (422, naming a field) or admits it, and then every child the builders make
from the admitted, defaulted run passes the apiserver's own validation of that child (server-side dry run,
strict field validation). Nothing is persisted."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from reasoning_operator.api import GROUP, PLURAL, VERSION, Stage
from reasoning_operator.core import builders
from reasoning_operator.core.run import Run

pytestmark = pytest.mark.controlplane
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "reasoningrun.yaml").read_text())
CRD = yaml.safe_load((ROOT / "crds" / "reasoningruns.yaml").read_text())
UID = "0f0e0d0c-0000-4000-8000-000000000000"

STRINGS = [
    "",
    " ",
    "x y",
    "Bad_Name",
    "UPPER",
    "a/b",
    "a.b",
    "a..b",
    "-a",
    "a-",
    "1",
    "0",
    "007",
    "true",
    "null",
    "ü",
    "a" * 64,
    "a" * 254,
    "b" * 2000,
    "$(HOME)",
    "${x}",
    "a\nb",
    "a:b",
    "*",
    "/",
    "..",
    ".",
    "..a",
    ".a",
    "s3://bucket/key",
    "http://mlflow:5000",
    "registry.example.com:5000/team/img:1.0",
    "0.5",
    "1Gi",
    "1e3",
    "-1",
    "1 Gi",
    "0Gi",
    "999999999999999999999999Ei",
    "1m",
]
INTEGERS = [0, -1, 1, 2**31, 2**53, 2**63 - 1]
NUMBERS = [0, -0.5, 1e-12, 1.0, 1e300]
ARRAYS: list[list[Any]] = [[], [""], ["a", "a"], ["x y"], [f"a{i}" for i in range(65)], ["ü"], ["Q_PROJ"]]
MAPS: list[dict[str, Any]] = [{}, {"": 1}, {"a b": 1}, {"a": -1}, {"a": 2**62}, {"ü": 1}]
NAMES = ["a", "a" * 50, "a" * 63, "a-b", "a1", "z-9"]


def _base() -> dict[str, Any]:
    """The example with every optional section set, so that each field reaches a child."""
    obj = copy.deepcopy(EXAMPLE)
    obj["spec"] |= {
        "dataset": obj["spec"]["dataset"] | {"source": "s3://bucket/nemotron", "credentialsSecret": "s3-creds"},
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct", "hubTokenSecret": {"name": "hf-token"}},
        "tracking": {"mlflow": {"url": "http://mlflow:5000", "experiment": "exp", "credentialsSecret": "ml"}},
        "export": {"merged": True, "adapter": True, "destination": "s3://bucket/out", "credentialsSecret": "s3"},
        "cache": {"enabled": True, "claimName": "shared-cache"},
        "queueName": "gpu",
    }
    return obj


def _leaves(node: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    kind = node.get("type")
    if kind == "object" and "properties" in node:
        for key, child in node["properties"].items():
            yield from _leaves(child, (*path, key))
    elif kind == "object":
        yield path, "map"
    else:
        yield path, str(kind)


def _values(kind: str) -> list[Any]:
    return {
        "string": STRINGS,
        "integer": INTEGERS,
        "number": NUMBERS,
        "boolean": [True, False],
        "array": ARRAYS,
        "map": MAPS,
    }[kind]


def _cases() -> list[tuple[str, dict[str, Any]]]:
    spec_schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    cases = []
    for path, kind in _leaves(spec_schema):
        for value in _values(kind):
            manifest = _base()
            node = manifest["spec"]
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
            cases.append((f"spec.{'.'.join(path)}={value!r:.40}", manifest))
    for name in NAMES:
        manifest = _base()
        manifest["metadata"] = {"name": name}
        cases.append((f"metadata.name={name!r:.40}", manifest))
    return cases


def _children(run: Run) -> list[dict[str, Any]]:
    children = [
        builders.build_claim(run),
        builders.build_config_map(run, builders.serving_url(run)),
        builders.build_curation_job(run),
        builders.build_training_job(run),
        builders.build_serving_deployment(run),
        builders.build_serving_service(run),
        builders.build_evaluation_job(run),
        builders.build_export_job(run) if run.spec.export is not None else None,
    ]
    return [child for child in children if child is not None]


def _check(api: k8s.ApiClient, dynamic: DynamicClient, namespace: str, case: str, manifest: dict[str, Any]) -> str:
    """'' for a refused run or an admitted one whose children all pass; otherwise what went wrong."""
    custom = k8s.CustomObjectsApi(api)
    try:
        created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest, dry_run="All")
    except ApiException as err:
        if err.status == 422 and ("spec." in str(err.body) or "metadata.name" in str(err.body)):
            return ""
        return f"{case}: the run was refused without naming a field: {err.status} {err.body}"
    created["metadata"] |= {"namespace": namespace, "uid": UID}
    try:
        run = Run.from_object(created)
        children = _children(run)
    except Exception as err:  # the operator's own model refuses what admission let through
        return f"{case}: admitted, but the operator cannot build its children: {err!r}"
    for child in children:
        resource = dynamic.resources.get(api_version=child["apiVersion"], kind=child["kind"])
        try:
            resource.create(body=child, namespace=namespace, dry_run="All", field_validation="Strict")
        except ApiException as err:
            return f"{case}: admitted, but its {child['kind']} {child['metadata']['name']} is refused: {err.body}"
    return ""


def test_the_base_run_is_admitted_and_reaches_every_child(
    api: k8s.ApiClient, namespace: str, crd: dict[str, Any]
) -> None:
    """The sweep's base must itself be admitted with every optional child, or the sweep would test nothing."""
    created = k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _base(), dry_run="All"
    )
    created["metadata"] |= {"namespace": namespace, "uid": UID}
    run = Run.from_object(created)
    kinds = sorted({c["kind"] for c in _children(run)})
    assert kinds == ["ConfigMap", "Deployment", "Job", "PersistentVolumeClaim", "Service"]
    assert run.child_name(Stage.EXPORT) in {c["metadata"]["name"] for c in _children(run)}


def test_every_field_at_hostile_values_is_refused_or_makes_valid_children(
    api: k8s.ApiClient, namespace: str, crd: dict[str, Any]
) -> None:
    cases = _cases()
    dynamic = DynamicClient(api)
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda c: _check(api, dynamic, namespace, *c), cases))
    problems = [p for p in found if p]
    assert len(cases) > 1000
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
