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
    # Full fine-tuning with the adapter-only vllm backend (the default): both fields are named.
    ("spec.training.method", "full", "spec.training.method full needs spec.serving.backend pytriton"),
    ("metadata.name", "x" * 60, "metadata.name"),
    # Values a child object would refuse (issue 24): each is refused at admission, naming the field.
    ("metadata.name", "run.v2", "metadata.name must be a DNS-1035 label"),  # the Service name would be invalid
    ("metadata.name", "2nd-run", "metadata.name must be a DNS-1035 label"),
    ("spec.model.hubTokenSecret", {"name": "Bad_Name"}, "spec.model.hubTokenSecret.name"),
    ("spec.model.hubTokenSecret", {"name": "hf", "key": "a/b"}, "spec.model.hubTokenSecret.key"),
    ("spec.model.hubTokenSecret", {"name": "hf", "key": ".."}, "spec.model.hubTokenSecret.key"),
    ("spec.model.hubTokenSecret", {"name": "hf", "key": "..token"}, "spec.model.hubTokenSecret.key"),
    ("spec.model.hubTokenSecret", {"name": "hf", "key": ""}, "spec.model.hubTokenSecret.key"),
    ("spec.dataset.credentialsSecret", "creds..x", "spec.dataset.credentialsSecret"),
    ("spec.dataset.credentialsSecret", "-creds", "spec.dataset.credentialsSecret"),
    ("spec.storage.storageClassName", "fast ssd", "spec.storage.storageClassName"),
    ("spec.storage.storageClassName", "$(reboot)", "spec.storage.storageClassName"),
    ("spec.storage.existingClaim", "My_Claim", "spec.storage.existingClaim"),
    ("spec.storage.size", "0", "spec.storage.size"),
    ("spec.storage.size", "0.000Gi", "spec.storage.size"),
    ("spec.training.resources", {"cpu": "0", "memory": "1Gi"}, "spec.training.resources.cpu"),
    ("spec.curation.resources", {"cpu": "1", "memory": "-1Gi"}, "spec.curation.resources.memory"),
    ("spec.training.acceptedGpuProducts", [""], "spec.training.acceptedGpuProducts[0]"),
    ("spec.training.acceptedGpuProducts", ["NVIDIA H100"], "spec.training.acceptedGpuProducts[0]"),
    ("spec.training.acceptedGpuProducts", ["A" * 64], "spec.training.acceptedGpuProducts[0]"),
    ("spec.training.acceptedGpuProducts", ["-A100"], "spec.training.acceptedGpuProducts[0]"),
    ("spec.training.acceptedGpuProducts", ["A100", "H100", "A100"], "spec.training.acceptedGpuProducts[2]"),
    ("spec.training.acceptedGpuProducts", [f"G{i}" for i in range(65)], "spec.training.acceptedGpuProducts"),
    ("spec.evaluation.benchmarks", ["mmlu", "mmlu"], "spec.evaluation.benchmarks[1]"),
    ("spec.evaluation.modes", ["on", "on"], "spec.evaluation.modes[1]"),
    ("spec.dataset.filenameFilters", ["chat", ""], "spec.dataset.filenameFilters[1]"),
    ("spec.dataset.filenameFilters", ["chat", "chat"], "spec.dataset.filenameFilters[1]"),
    ("spec.training.lora", {"targetModules": ["q_proj", "q_proj"]}, "spec.training.lora.targetModules[1]"),
    ("spec.curation.removeColumns", [""], "spec.curation.removeColumns[0]"),
    ("spec.curation.categoryCaps", {"math code": 10}, "spec.curation.categoryCaps"),
    ("spec.curation.categoryCaps", {"math": -1}, "spec.curation.categoryCaps.math"),
    ("spec.serving.maxModelLen", 2**62, "spec.serving.maxModelLen"),
    ("spec.training.maxSteps", 2**40, "spec.training.maxSteps"),
    ("spec.training.seed", 2**33, "spec.training.seed"),
    ("spec.training.checkpointInterval", 2**40, "spec.training.checkpointInterval"),
    ("spec.evaluation.sampleLimit", 2**40, "spec.evaluation.sampleLimit"),
    ("spec.model.name", "m" * 1100, "spec.model.name"),  # a string that would blow up the ConfigMap
    ("spec.dataset.source", "/" + "d" * 2000, "spec.dataset.source"),
    ("spec.dataset.usedInTraining", "", "spec.dataset.usedInTraining"),
    ("spec.curation.tokenizer", "t" * 2000, "spec.curation.tokenizer"),
    ("spec.evaluation.dataDir", "/" + "e" * 2000, "spec.evaluation.dataDir"),
    ("spec.progressDeadlineSeconds", 0, "spec.progressDeadlineSeconds"),
    ("spec.cache", {"enabled": True}, "spec.cache.claimName is required when spec.cache.enabled is true"),
    ("spec.cache", {"enabled": True, "claimName": "Shared_Cache"}, "spec.cache.claimName"),
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


def _at_every_bound(namespace: str) -> dict[str, Any]:
    """A run whose every name, list and string sits at the largest value admission accepts."""
    obj = copy.deepcopy(EXAMPLE)
    long_subdomain = ".".join(["s" * 63] * 3) + "." + "s" * 61  # 253 characters
    obj["metadata"] = {"name": "r" * 50, "namespace": namespace, "uid": "0f0e0d0c-0000-4000-8000-000000000000"}
    obj["spec"] |= {
        "dataset": {
            "source": "/" + "d" * 1023,
            "filenameFilters": [f"{i:03d}" + "f" * 250 for i in range(64)],
            "usedInTraining": "u" * 253,
            "credentialsSecret": long_subdomain,
        },
        "curation": {
            "tokenizer": "t" * 1024,
            "removeColumns": [f"{i:03d}" + "c" * 250 for i in range(64)],
            "categoryCaps": {f"{i:03d}" + "k" * 60: 100_000_000 for i in range(64)},
        },
        "model": {"name": "m" * 1024, "hubTokenSecret": {"name": long_subdomain, "key": "K" * 253}},
        "training": {
            "acceptedGpuProducts": [f"{i:03d}" + "G" * 60 for i in range(64)],
            "lora": {"targetModules": [f"{i:03d}" + "p" * 250 for i in range(64)]},
            "maxSteps": 10_000_000,
            "seed": 4_294_967_295,
        },
        "serving": {"maxModelLen": 1_048_576, "gpus": 1},
        "evaluation": {"dataDir": "/" + "e" * 1023, "sampleLimit": 100_000_000},
        "storage": {"storageClassName": long_subdomain, "size": "9" * 29 + "Pi"},
    }
    return obj


def test_a_run_at_every_bound_is_admitted_and_its_children_pass_apiserver_validation(
    api: k8s.ApiClient, namespace: str, crd: dict[str, Any]
) -> None:
    """Admission bounds and child validity agree: the largest admitted run still makes valid children (the
    ConfigMap under 1 MiB, the Service name a DNS-1035 label, the affinity values label values)."""
    obj = _at_every_bound(namespace)
    created = k8s.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {k: v for k, v in obj.items() if k != "status"} | {"metadata": {"name": obj["metadata"]["name"]}},
    )
    obj["metadata"]["uid"] = created["metadata"]["uid"]
    obj["spec"] = created["spec"]  # with the apiserver's defaults
    run = Run.from_object(obj)
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(api)
    config_map = builders.build_config_map(run, builders.serving_url(run))
    assert sum(len(v) for v in config_map["data"].values()) < 1024 * 1024
    for child in (
        builders.build_claim(run),
        config_map,
        builders.build_curation_job(run),
        builders.build_training_job(run),
        builders.build_serving_deployment(run),
        builders.build_serving_service(run),
        builders.build_evaluation_job(run),
    ):
        assert child is not None
        resource = dynamic.resources.get(api_version=child["apiVersion"], kind=child["kind"])
        resource.create(body=child, namespace=namespace, dry_run="All", field_validation="Strict")
