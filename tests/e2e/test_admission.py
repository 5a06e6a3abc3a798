"""What the apiserver itself enforces from the generated CRD: bad manifests are rejected at apply time
with a message naming the field, stage inputs are immutable, and every child manifest the builders make
passes the apiserver's own validation (server-side dry run against this Kubernetes version)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from reasoning_operator.api import GROUP, PLURAL, VERSION
from reasoning_operator.core import builders
from reasoning_operator.core.run import Run

pytestmark = pytest.mark.controlplane
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "reasoningrun.yaml").read_text())


def _with(path: str, value: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(EXAMPLE)
    node = manifest
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return manifest


BAD = [
    ("spec.training.learningRate", 0, "spec.training.learningRate"),
    ("spec.training.globalBatchSize", 100, "microBatchSize"),  # 100 % 3 != 0 (micro batch set below)
    ("spec.training.lora", {"rank": 0}, "spec.training.lora.rank"),
    ("spec.training.precision", "int4", "spec.training.precision"),
    ("spec.training.fp8BaseWeights", True, "fp8BaseWeights needs method lora"),  # with method full, below
    ("spec.training.warmupRatio", 1.5, "spec.training.warmupRatio"),
    ("spec.training.acceptedGpuProducts", [], "spec.training.acceptedGpuProducts"),
    ("spec.evaluation.benchmarks", ["hellaswag"], "spec.evaluation.benchmarks"),
    ("spec.evaluation.modes", ["maybe"], "spec.evaluation.modes"),
    ("spec.dataset.source", "ftp://example/data", "spec.dataset.source"),
    ("spec.dataset.filenameFilters", [], "spec.dataset.filenameFilters"),
    ("spec.dataset.credentialsSecret", "S3_Creds", "spec.dataset.credentialsSecret"),
    ("spec.storage.size", "a lot", "spec.storage.size"),
    ("spec.curation.language", "English", "spec.curation.language"),
    ("spec.serving.replicas", -1, "spec.serving.replicas"),
    ("metadata.name", "x" * 60, "metadata.name"),
    # image overrides must be image references (an upper-case path, a space, an empty tag)
    ("spec.images.serving", "ghcr.io/Team/serving:0.1.0", "spec.images.serving"),
    ("spec.images.training", "registry.example.com/training:my tag", "spec.images.training"),
    ("spec.images.curation", "ghcr.io/reasoning-operator/curation:", "spec.images.curation"),
]


@pytest.mark.parametrize(("path", "value", "named"), BAD, ids=[b[0] + "=" + str(b[1])[:12] for b in BAD])
def test_bad_manifest_is_rejected_naming_the_field(
    api: k8s.ApiClient, namespace: str, crd: dict[str, Any], path: str, value: Any, named: str
) -> None:
    manifest = _with(path, value)
    if path == "spec.training.globalBatchSize":
        manifest["spec"]["training"]["microBatchSize"] = 3
    if path == "spec.training.fp8BaseWeights":
        manifest["spec"]["training"]["method"] = "full"
    with pytest.raises(ApiException) as err:
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    assert err.value.status == 422, err.value.body
    assert named in err.value.body, err.value.body


def test_stage_inputs_are_immutable(api: k8s.ApiClient, namespace: str, crd: dict[str, Any]) -> None:
    custom = k8s.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, EXAMPLE)
    name = EXAMPLE["metadata"]["name"]
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"spec": {"training": {"learningRate": 0.001}}}
        )
    assert err.value.status == 422 and "spec.training is immutable" in err.value.body
    # Serving knobs stay mutable: keep the server after evaluation, or scale it.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": {"serving": {"keepServing": True, "replicas": 2}}}
    )
    assert (
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)["spec"]["serving"]["replicas"] == 2
    )


def test_defaults_are_filled_by_the_apiserver(api: k8s.ApiClient, namespace: str, crd: dict[str, Any]) -> None:
    custom = k8s.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, EXAMPLE)
    training = created["spec"]["training"]
    assert training["lora"]["rank"] == 64 and training["globalBatchSize"] == 256
    assert created["spec"]["evaluation"]["benchmarks"] == ["gpqa_diamond", "gpqa_main", "mmlu"]


def test_every_child_manifest_passes_apiserver_validation(
    api: k8s.ApiClient, namespace: str, crd: dict[str, Any]
) -> None:
    obj = copy.deepcopy(EXAMPLE)
    obj["metadata"] |= {"namespace": namespace, "uid": "0f0e0d0c-0000-4000-8000-000000000000"}
    obj["spec"]["model"]["hubTokenSecret"] = {"name": "hf-token"}
    obj["spec"]["dataset"] |= {"source": "s3://bucket/nemotron", "credentialsSecret": "s3-creds"}
    run = Run.from_object(obj)
    children = [
        builders.build_claim(run),
        builders.build_config_map(run, builders.serving_url(run)),
        builders.build_curation_job(run),
        builders.build_training_job(run),
        builders.build_serving_deployment(run),
        builders.build_serving_service(run),
        builders.build_evaluation_job(run),
    ]
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api)
    for child in children:
        assert child is not None
        resource = dynamic.resources.get(api_version=child["apiVersion"], kind=child["kind"])
        # Strict field validation: an unknown or misspelt field is an error, not a silent drop.
        resource.create(body=child, namespace=namespace, dry_run="All", field_validation="Strict")
