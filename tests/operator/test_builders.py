"""Child manifests: deterministic names, owner references, labels, GPU placement, the stage configs."""

from __future__ import annotations

from typing import Any

import yaml

from reasoning_operator.api import (
    CurationStageConfig,
    EvaluationStageConfig,
    ServingStageConfig,
    Stage,
    TrainingStageConfig,
)
from reasoning_operator.core import builders
from reasoning_operator.core.run import Run


def _run(make_run: Any, **spec: Any) -> Run:
    return Run.from_object(make_run(spec=spec))


def test_names_labels_owner(make_run: Any) -> None:
    run = _run(make_run)
    job = builders.build_curation_job(run)
    assert job["metadata"]["name"] == "demo-curation"
    owner = job["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "0123456789abcdef" and owner["controller"] is True
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "reasoning-operator"
    assert labels["reasoning-operator.dev/stage"] == "curation"
    assert builders.build_curation_job(run) == job  # pure and deterministic


def test_training_job_gpu_placement(make_run: Any) -> None:
    run = _run(make_run, training={"acceptedGpuProducts": ["NVIDIA-H100-80GB-HBM3"]})
    pod = builders.build_training_job(run)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"] == [
        {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3"]}
    ]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["args"] == ["train", "--config", "/etc/reasoning/training.yaml"]


def test_curation_and_evaluation_jobs_use_no_gpu(make_run: Any) -> None:
    run = _run(make_run)
    for job in (builders.build_curation_job(run), builders.build_evaluation_job(run)):
        pod = job["spec"]["template"]["spec"]
        assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
        assert "affinity" not in pod


def test_hub_token_comes_from_the_secret(make_run: Any) -> None:
    run = _run(make_run, model={"hubTokenSecret": {"name": "hf"}})
    env = builders.build_curation_job(run)["spec"]["template"]["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "HF_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}


def test_object_store_credentials_reach_only_the_curation_pod(make_run: Any) -> None:
    run = _run(make_run, dataset={"source": "s3://bucket/nemotron", "credentialsSecret": "s3-creds"})
    curation = builders.build_curation_job(run)["spec"]["template"]["spec"]["containers"][0]
    assert curation["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    for job in (builders.build_training_job(run), builders.build_evaluation_job(run)):
        assert "envFrom" not in job["spec"]["template"]["spec"]["containers"][0]
    assert "envFrom" not in builders.build_curation_job(_run(make_run))["spec"]["template"]["spec"]["containers"][0]


def test_config_map_holds_each_stage_model(make_run: Any) -> None:
    run = _run(make_run, dataset={"source": "/workspace/data/nemotron"})
    cm = builders.build_config_map(run, builders.serving_url(run))
    curation = CurationStageConfig.model_validate(yaml.safe_load(cm["data"]["curation.yaml"]))
    training = TrainingStageConfig.model_validate(yaml.safe_load(cm["data"]["training.yaml"]))
    evaluation = EvaluationStageConfig.model_validate(yaml.safe_load(cm["data"]["evaluation.yaml"]))
    assert curation.dataset.source == "/workspace/data/nemotron"
    assert curation.tokenizer == "meta-llama/Llama-3.1-8B-Instruct"
    assert training.data_path == f"{curation.output_dir}/training.jsonl"
    assert evaluation.server_url == "http://demo-serving.ns.svc:8000"  # KServe v2 (tritonclient), either backend
    assert evaluation.models == ["trained", "base"]
    assert run.run_dir.startswith("/workspace/runs/demo-01234567")


def test_claim_retained_by_default_and_skipped_for_existing(make_run: Any) -> None:
    claim = builders.build_claim(_run(make_run))
    assert claim is not None and "ownerReferences" not in claim["metadata"]
    deleting = builders.build_claim(_run(make_run, storage={"reclaimPolicy": "Delete"}))
    assert deleting is not None and deleting["metadata"]["ownerReferences"]
    assert builders.build_claim(_run(make_run, storage={"existingClaim": "mine"})) is None
    job = builders.build_curation_job(_run(make_run, storage={"existingClaim": "mine"}))
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "mine"}} in volumes


def test_serving_deployment_probes_and_service(make_run: Any) -> None:
    run = _run(make_run)
    dep = builders.build_serving_deployment(run)
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/models/trained/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    dev = _run(make_run, serving={"backend": "pytriton", "gpus": 0})
    dev_container = builders.build_serving_deployment(dev)["spec"]["template"]["spec"]["containers"][0]
    assert dev_container["readinessProbe"]["httpGet"]["path"] == "/v2/models/trained/ready"
    assert builders.serving_url(dev) == "http://demo-serving.ns.svc:8000"
    assert builders.serving_url(run) == "http://demo-serving.ns.svc:8000"
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "9000"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    svc = builders.build_serving_service(run)
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert {p["port"] for p in svc["spec"]["ports"]} == {8000, 8001, 8002, 9000}
    assert dep["metadata"]["name"] == svc["metadata"]["name"] == run.child_name(Stage.SERVING)
    # The serving timeout is the Deployment's own progress deadline: past it, ProgressDeadlineExceeded fails the run.
    assert dep["spec"]["progressDeadlineSeconds"] == 1800
    quick = _run(make_run, serving={"readyTimeoutSeconds": 45})
    assert builders.build_serving_deployment(quick)["spec"]["progressDeadlineSeconds"] == 45


def _pod_specs(run: Run) -> list[dict[str, Any]]:
    return [
        builders.build_curation_job(run)["spec"]["template"]["spec"],
        builders.build_training_job(run)["spec"]["template"]["spec"],
        builders.build_evaluation_job(run)["spec"]["template"]["spec"],
        builders.build_serving_deployment(run)["spec"]["template"]["spec"],
    ]


def test_every_pod_satisfies_restricted_pod_security(make_run: Any) -> None:
    """The restricted profile's checks (kubernetes.io/docs/concepts/security/pod-security-standards), per pod."""
    run = _run(make_run)
    for pod in _pod_specs(run):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any("hostPath" in v for v in pod["volumes"])
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert not sc.get("privileged")
            # The read-only root needs a writable scratch dir (HOME, Ray's temp dir): an emptyDir on /tmp.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            scratch = next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
            assert "emptyDir" in scratch


def test_the_serving_config_leaves_out_the_operators_ready_timeout(make_run: Any) -> None:
    """Only the operator reads serving.readyTimeoutSeconds; a serving image one API version older rejects
    unknown fields, so the serving stage's config does not carry it (the other serving fields it does)."""
    run = _run(make_run, serving={"readyTimeoutSeconds": 45, "backend": "pytriton", "gpus": 0})
    data = builders.build_config_map(run, builders.serving_url(run))["data"]
    serving = yaml.safe_load(data["serving.yaml"])["serving"]
    assert "readyTimeoutSeconds" not in serving and serving["backend"] == "pytriton" and serving["gpus"] == 0
    assert ServingStageConfig.model_validate(yaml.safe_load(data["serving.yaml"])).serving.ready_timeout_seconds == 1800


def test_the_config_map_text_is_what_yaml_safe_dump_writes_and_the_jobs_read_back(make_run: Any) -> None:
    """The builder renders with libyaml's emitter (and memoises): the text must stay PyYAML's own, byte for
    byte, and a second build must not hand out shared, mutable data."""
    from reasoning_operator.api import stage_configs

    run = Run.from_object(make_run(spec={"training": {"maxSteps": 700}}))
    first = builders.build_config_map(run, "http://server:8000")
    configs = stage_configs(run.spec, run.run_dir, "http://server:8000")
    for stage in Stage:
        config = getattr(configs, stage.value)
        if config is None:  # the export stage of a run without spec.export
            assert f"{stage.value}.yaml" not in first["data"]
            continue
        expected = yaml.safe_dump(config.to_wire(), sort_keys=False)
        assert first["data"][f"{stage.value}.yaml"] == expected
    first["data"].clear()
    assert builders.build_config_map(run, "http://server:8000")["data"]
    other = Run.from_object(make_run(spec={"training": {"maxSteps": 800}}))
    assert (
        builders.build_config_map(other, "http://server:8000")["data"]
        != builders.build_config_map(run, "http://server:8000")["data"]
    )
