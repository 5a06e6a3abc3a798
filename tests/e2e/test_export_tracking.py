"""spec.export and spec.tracking through the real operator and control plane (kwok plays the kubelet; the
test finishes each pod with its result): the export stage runs after evaluation with its result in status,
credentials reach the pods only as Secret references, and no secret value appears in the run's status, its
ConfigMap or the operator's log. The CEL rules refuse the combinations the jobs could not run."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException
from tests.e2e.conftest import Runs
from tests.e2e.test_run_lifecycle import CURATION, EVALUATION, EXAMPLE, NAME, TRAINING
from tests.support.fake_kubelet import finish_job_pods, wait_for_pod

from reasoning_operator.api import GROUP, PLURAL, VERSION

pytestmark = pytest.mark.controlplane
SECRET_VALUE = "tr4cking-and-export-s3cret"
EXPORT_RESULT = {"destination": "s3://models/demo", "mergedPath": "s3://models/demo/merged", "files": 9, "bytes": 4096}


def _secret(runs: Runs, name: str, data: dict[str, str]) -> None:
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=name),
        data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    )
    runs.core.create_namespaced_secret(runs.namespace, body)


def test_export_and_tracking_run_to_succeeded_without_leaking_secrets(runs: Runs) -> None:
    _secret(runs, "mlflow-creds", {"MLFLOW_TRACKING_TOKEN": SECRET_VALUE})
    _secret(runs, "s3-creds", {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": SECRET_VALUE})
    manifest = copy.deepcopy(EXAMPLE)
    manifest["spec"]["tracking"] = {"mlflow": {"url": "http://mlflow.mlops:5000", "credentialsSecret": "mlflow-creds"}}
    manifest["spec"]["export"] = {"destination": "s3://models/demo", "adapter": True, "credentialsSecret": "s3-creds"}
    runs.create(manifest)
    runs.wait_phase(NAME, "Curating")
    config = runs.core.read_namespaced_config_map(f"{NAME}-config", runs.namespace)
    assert "export.yaml" in config.data and "http://mlflow.mlops:5000" in config.data["training.yaml"]
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(NAME, "Training")
    training = wait_for_pod(runs.core, runs.namespace, f"job-name={NAME}-training", timeout=60)
    refs = {e.name: e.value_from.secret_key_ref for e in training.spec.containers[0].env if e.name.startswith("MLFLOW")}
    assert refs["MLFLOW_TRACKING_TOKEN"].name == "mlflow-creds" and refs["MLFLOW_TRACKING_TOKEN"].optional
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    runs.wait_phase(NAME, "Evaluating")
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    obj = runs.wait_phase(NAME, "Exporting")
    assert obj["status"]["headlineAccuracy"] == "gpqa_diamond/on: 0.420"
    export_pod = wait_for_pod(runs.core, runs.namespace, f"job-name={NAME}-export", timeout=60)
    box = export_pod.spec.containers[0]
    assert box.args == ["export", "--config", "/etc/reasoning/export.yaml"]
    assert [ref.secret_ref.name for ref in box.env_from] == ["s3-creds"]
    assert export_pod.spec.node_name == "cpu-0"  # no GPU asked for
    finish_job_pods(runs.core, runs.namespace, f"{NAME}-export", "Succeeded", json.dumps(EXPORT_RESULT), timeout=60)
    obj = runs.wait_phase(NAME, "Succeeded")
    assert obj["status"]["export"]["mergedPath"] == "s3://models/demo/merged"
    assert obj["status"]["stages"]["export"]["phase"] == "Succeeded"
    assert next(c for c in obj["status"]["conditions"] if c["type"] == "Exported")["status"] == "True"

    config = runs.core.read_namespaced_config_map(f"{NAME}-config", runs.namespace)
    seen = json.dumps(obj) + json.dumps(config.data) + (runs.operator.log_tail(10_000) if runs.operator else "")
    assert SECRET_VALUE not in seen and base64.b64encode(SECRET_VALUE.encode()).decode() not in seen


BAD = [
    ({"export": {"merged": False}}, "spec.export needs merged or adapter"),
    ({"export": {"destination": "s3://models/x"}}, "needs spec.export.credentialsSecret"),
    ({"export": {"destination": "models/x"}}, "spec.export.destination"),
    ({"tracking": {"mlflow": {"url": "mlflow:5000"}}}, "spec.tracking.mlflow.url"),
]


@pytest.mark.parametrize(("spec", "named"), BAD, ids=[b[1][:30] for b in BAD])
def test_bad_export_or_tracking_is_rejected(
    api: k8s.ApiClient, namespace: str, crd: dict[str, Any], spec: dict[str, Any], named: str
) -> None:
    manifest = copy.deepcopy(EXAMPLE)
    manifest["spec"].update(spec)
    with pytest.raises(ApiException) as err:
        k8s.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, manifest)
    assert err.value.status == 422, err.value.body
    assert named in err.value.body, err.value.body
