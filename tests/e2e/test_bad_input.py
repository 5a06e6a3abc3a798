"""Bad input never leaves a run stuck (issue 24, parts 1 and 2), on the real control plane with the operator
as a real process: a child the apiserver refuses, a pod it refuses (Pod Security, quota), and a stage that
can never progress each end in a condition with a reason, and an Event; nothing loops, nothing downstream is
created. And a whole run succeeds in a namespace that enforces the restricted Pod Security Standard.

How the refusals are provoked: admission now refuses every spec value that would break a child, so the
apiserver is made to refuse the child itself: a ValidatingAdmissionPolicy (a real admission plugin)
refusing one kind of child of one run; a ResourceQuota; and for Pod Security, a MutatingAdmissionPolicy that
turns on privilege escalation in one run's pods before the PodSecurity admission plugin checks them (the
operator's own pods are compliant, which the Succeeded run in the same kind of namespace shows)."""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ApiException
from tests.e2e.conftest import Operator, Runs
from tests.support.fake_kubelet import finish_job_pods, wait_until

pytestmark = pytest.mark.controlplane
EXAMPLE = yaml.safe_load((Path(__file__).resolve().parents[2] / "examples" / "reasoningrun.yaml").read_text())
CURATION = {"samplesRead": 10, "samplesWritten": 8, "dropped": {"language": 2}}
TRAINING = {"steps": 2000, "finalLoss": 0.6, "tokensSeen": 1234}
EVALUATION = {
    "accuracies": [
        {"benchmark": "gpqa_diamond", "mode": "on", "model": "trained", "accuracy": 0.4, "n": 198},
        {"benchmark": "gpqa_diamond", "mode": "on", "model": "base", "accuracy": 0.3, "n": 198},
    ]
}
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


def _manifest(name: str, **spec: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(EXAMPLE)
    manifest["metadata"]["name"] = name
    for section, values in spec.items():
        if isinstance(values, dict):
            manifest["spec"].setdefault(section, {}).update(values)
        else:
            manifest["spec"][section] = values
    return manifest


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def _label_namespace(api: k8s.ApiClient, namespace: str, labels: dict[str, str]) -> None:
    k8s.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": labels}})


@pytest.fixture
def policies(api: k8s.ApiClient) -> Iterator[list[tuple[str, str]]]:
    """Cluster-scoped admission policies a test creates, deleted after it: (kind, name)."""
    created: list[tuple[str, str]] = []
    yield created
    dynamic = DynamicClient(api)
    for kind, name in reversed(created):
        resource = dynamic.resources.get(api_version="admissionregistration.k8s.io/v1", kind=kind)
        with contextlib.suppress(ApiException):
            resource.delete(name=name)


def _refuse(api: k8s.ApiClient, policies: list[tuple[str, str]], namespace: str, resource: str, run: str) -> None:
    """A ValidatingAdmissionPolicy refusing `resource` objects of one run in one namespace."""
    dynamic = DynamicClient(api)
    name = f"refuse-{resource}-{namespace}"[:63]
    group = {"configmaps": "", "services": "", "jobs": "batch"}[resource]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [group],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [resource],
                    }
                ]
            },
            "validations": [
                {
                    "expression": (
                        "!has(object.metadata.labels) || "
                        f"object.metadata.labels[?'reasoning-operator.dev/run'].orValue('') != '{run}'"
                    ),
                    "message": f"the test's policy refuses {resource} of run {run}",
                    "reason": "Invalid",
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    for obj in (policy, binding):
        dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).create(body=obj)
        policies.append((obj["kind"], name))
    _wait_policy_in_effect(api, namespace, resource, run)


def _probe_object(resource: str, run: str) -> dict[str, Any]:
    labels = {"reasoning-operator.dev/run": run}
    if resource == "configmaps":
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe", "labels": labels}}
    if resource == "services":
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "probe", "labels": labels},
            "spec": {"ports": [{"port": 80}]},
        }
    raise ValueError(resource)


def _wait_policy_in_effect(api: k8s.ApiClient, namespace: str, resource: str, run: str) -> None:
    dynamic = DynamicClient(api)
    probe = _probe_object(resource, run)
    handle = dynamic.resources.get(api_version=probe["apiVersion"], kind=probe["kind"])

    def refused() -> bool:
        try:
            handle.create(body=probe, namespace=namespace, dry_run="All")
        except ApiException as err:
            return "the test's policy refuses" in str(err.body)
        return False

    wait_until(refused, timeout=30, interval=0.3, what=f"admission policy on {resource} in effect")


def _refusal_log_lines(operator: Operator, what: str) -> int:
    return sum(
        1 for line in operator.log_path.read_text(errors="replace").splitlines() if what in line and "refused" in line
    )


def _events(runs: Runs, name: str) -> list[Any]:
    return list(runs.core.list_namespaced_event(runs.namespace, field_selector=f"involvedObject.name={name}").items)


def test_a_refused_config_map_fails_the_run_once_and_no_job_points_at_it(
    api: k8s.ApiClient, runs: Runs, operator: Operator, policies: list[tuple[str, str]]
) -> None:
    name = "refused-config"
    _refuse(api, policies, runs.namespace, "configmaps", name)
    runs.create(_manifest(name))
    obj = runs.wait_phase(name, "Failed", timeout=60)
    failed = _condition(obj, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "ChildRejected", failed
    assert f"ConfigMap {name}-config" in failed["message"]
    assert "the test's policy refuses configmaps" in failed["message"]  # the apiserver's own message
    assert _condition(obj, "Succeeded")["status"] == "False"
    assert not [j for j in runs.jobs() if j.metadata.name.startswith(name)]  # no Job mounting a missing ConfigMap
    assert any(e.reason == "ChildRejected" and e.type == "Warning" for e in _events(runs, name))
    # No loop: several resync periods (2 s here) later, the ConfigMap was asked for exactly once.
    version = obj["metadata"]["resourceVersion"]
    time.sleep(8)
    assert _refusal_log_lines(operator, f"ConfigMap {name}-config") == 1
    assert runs.get(name)["metadata"]["resourceVersion"] == version


def test_a_refused_service_fails_the_run_and_no_evaluation_job_is_created(
    api: k8s.ApiClient, runs: Runs, operator: Operator, policies: list[tuple[str, str]]
) -> None:
    name = "refused-service"
    _refuse(api, policies, runs.namespace, "services", name)
    runs.create(_manifest(name))
    runs.wait_phase(name, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{name}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(name, "Training")
    finish_job_pods(runs.core, runs.namespace, f"{name}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    obj = runs.wait_phase(name, "Failed", timeout=60)
    failed = _condition(obj, "Failed")
    assert failed["reason"] == "ChildRejected" and f"Service {name}-serving" in failed["message"], failed
    assert _condition(obj, "ServingReady")["reason"] == "ChildRejected"
    assert obj["status"]["stages"]["serving"]["phase"] == "Failed"
    time.sleep(4)
    assert sorted(j.metadata.name for j in runs.jobs()) == [f"{name}-curation", f"{name}-training"]
    # The failed run does not keep a server either.
    wait_until(lambda: not runs.apps.list_namespaced_deployment(runs.namespace).items, timeout=30, what="no Deployment")


def _wait_for_policy(api: k8s.ApiClient, namespace: str, run: str) -> None:
    """Until the apiserver's policy cache has the new policy (about a second when idle, longer on a busy machine):
    a dry-run pod of the run, compliant with `restricted`, is refused once the policy escalates it."""
    pod = {
        "metadata": {"generateName": "probe-", "labels": {"reasoning-operator.dev/run": run}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": "probe",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }

    def refused() -> bool:
        try:
            k8s.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")
        except k8s.ApiException as err:
            return "allowPrivilegeEscalation" in str(err.body)
        return False

    wait_until(refused, timeout=60, interval=0.5, what="the mutating policy in effect")


def test_a_pod_refused_by_pod_security_fails_the_run_naming_the_job(
    api: k8s.ApiClient, runs: Runs, operator: Operator, policies: list[tuple[str, str]]
) -> None:
    name = "psa-refused"
    _label_namespace(api, runs.namespace, RESTRICTED)
    dynamic = DynamicClient(api)
    policy_name = f"escalate-{runs.namespace}"[:63]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": policy_name},
        "spec": {
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                ]
            },
            "matchConditions": [
                {
                    "name": "this-run",
                    "expression": f"object.metadata.labels[?'reasoning-operator.dev/run'].orValue('') == '{name}'",
                }
            ],
            "mutations": [
                {
                    "patchType": "JSONPatch",
                    "jsonPatch": {
                        "expression": (
                            "[JSONPatch{op: 'replace', "
                            "path: '/spec/containers/0/securityContext/allowPrivilegeEscalation', value: true}]"
                        )
                    },
                }
            ],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": policy_name},
        "spec": {
            "policyName": policy_name,
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": runs.namespace}}},
        },
    }
    for obj in (policy, binding):
        dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"]).create(body=obj)
        policies.append((obj["kind"], policy_name))
    _wait_for_policy(api, runs.namespace, name)
    runs.create(_manifest(name))
    obj = runs.wait_phase(name, "Failed", timeout=90)
    failed = _condition(obj, "Failed")
    assert failed["reason"] == "ChildRejected", failed
    assert f"Job {name}-curation cannot create its pod" in failed["message"]
    assert "violates PodSecurity" in failed["message"] and "allowPrivilegeEscalation" in failed["message"]
    assert _condition(obj, "DataCurated")["reason"] == "ChildRejected"
    assert any(e.reason == "ChildRejected" for e in _events(runs, name))
    assert [j.metadata.name for j in runs.jobs()] == [f"{name}-curation"]


def test_a_pod_over_quota_fails_the_run_naming_the_quota(api: k8s.ApiClient, runs: Runs) -> None:
    name = "over-quota"
    runs.core.create_namespaced_resource_quota(
        runs.namespace, {"metadata": {"name": "small"}, "spec": {"hard": {"limits.memory": "1Gi"}}}
    )
    wait_until(  # until the quota controller has counted usage, admission says "status unknown" (a hiccup)
        lambda: runs.core.read_namespaced_resource_quota("small", runs.namespace).status.used or None,
        timeout=30,
        what="quota usage computed",
    )
    runs.create(_manifest(name))
    obj = runs.wait_phase(name, "Failed", timeout=90)
    failed = _condition(obj, "Failed")
    assert failed["reason"] == "ChildRejected" and "exceeded quota: small" in failed["message"], failed


def test_training_that_no_node_can_ever_take_is_stalled_within_the_deadline(runs: Runs) -> None:
    name = "no-node"
    runs.create(_manifest(name, training={"acceptedGpuProducts": ["NVIDIA-B200"]}, progressDeadlineSeconds=10))
    runs.wait_phase(name, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{name}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(name, "Training")
    started = time.monotonic()
    obj = runs.wait(
        name,
        lambda o: any(
            c["type"] == "Stalled" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions", [])
        ),
        "Stalled",
        timeout=40,
    )
    stalled = _condition(obj, "Stalled")
    assert stalled["reason"] == "Unschedulable" and "progressDeadlineSeconds: 10" in stalled["message"], stalled
    assert obj["status"]["phase"] == "Training"  # still waiting for capacity, and saying so
    assert time.monotonic() - started < 30


def test_a_whole_run_succeeds_in_a_namespace_enforcing_restricted_pod_security(api: k8s.ApiClient, runs: Runs) -> None:
    _label_namespace(api, runs.namespace, RESTRICTED)
    name = "restricted"
    runs.create(_manifest(name, serving={"keepServing": False}))
    runs.wait_phase(name, "Curating")
    finish_job_pods(runs.core, runs.namespace, f"{name}-curation", "Succeeded", json.dumps(CURATION), timeout=60)
    runs.wait_phase(name, "Training")
    finish_job_pods(runs.core, runs.namespace, f"{name}-training", "Succeeded", json.dumps(TRAINING), timeout=60)
    runs.wait_phase(name, "Evaluating", timeout=60)
    finish_job_pods(runs.core, runs.namespace, f"{name}-evaluation", "Succeeded", json.dumps(EVALUATION), timeout=60)
    obj = runs.wait_phase(name, "Succeeded", timeout=60)
    assert _condition(obj, "Succeeded")["status"] == "True"
    # Every pod was admitted under "restricted" (the namespace enforces it; a refused one never exists).
    pods = runs.core.list_namespaced_pod(runs.namespace).items
    assert {p.metadata.labels["reasoning-operator.dev/stage"] for p in pods} >= {"curation", "training", "evaluation"}
    refused = [e for e in runs.core.list_namespaced_event(runs.namespace).items if e.reason == "FailedCreate"]
    assert not refused, [e.message for e in refused]
