"""The operator's own REST calls (reasoning_operator.rest, through kube.Kube) against a real apiserver:
what the generated client did for it before must still hold: auth by client certificate and by bearer token,
query encoding, server-side apply, merge-patched status, errors as ApiException with the Status body."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from tests.support.controlplane import ControlPlane

from reasoning_operator.cache import RunStore
from reasoning_operator.core.decide import Event
from reasoning_operator.core.rejection import parse_failure
from reasoning_operator.core.run import Run
from reasoning_operator.kube import FIELD_MANAGER, Kube, load_config
from reasoning_operator.rest import Rest


def _config_map(namespace: str, name: str, data: dict[str, str], run: str = "r1") -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "reasoning-operator", "reasoning-operator.dev/run": run}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "data": data,
    }


def test_create_apply_get_list_delete_round_trip(control_plane: ControlPlane, namespace: str) -> None:
    kube = Kube(load_config(str(control_plane.kubeconfig)))
    assert kube.create_if_absent(_config_map(namespace, "a", {"k": "1"}))
    assert not kube.create_if_absent(_config_map(namespace, "a", {"k": "other"}))  # exists: no second create
    assert kube.apply(_config_map(namespace, "b", {"k": "2"}))
    assert kube.apply(_config_map(namespace, "b", {"k": "3"}))  # no cache: every apply is sent
    got = kube._get("ConfigMap", namespace, "b")
    assert got is not None and got["data"] == {"k": "3"}
    managers = {m["manager"] for m in got["metadata"]["managedFields"]}
    assert managers == {FIELD_MANAGER}
    created = kube._get("ConfigMap", namespace, "a")
    assert created is not None and {m["manager"] for m in created["metadata"]["managedFields"]} == {FIELD_MANAGER}
    # a label selector with '=' and '/' is encoded; each listed item gets its kind back
    listed = kube._list("ConfigMap", namespace, "r1")
    assert sorted(i["metadata"]["name"] for i in listed) == ["a", "b"]
    assert {i["kind"] for i in listed} == {"ConfigMap"}
    assert kube._list("ConfigMap", namespace, "nobody") == []
    kube.delete("ConfigMap", namespace, "a")
    kube.delete("ConfigMap", namespace, "a")  # gone already: not an error
    assert kube._get("ConfigMap", namespace, "a") is None


def test_a_refusal_is_an_api_exception_with_the_status_body(control_plane: ControlPlane, namespace: str) -> None:
    kube = Kube(load_config(str(control_plane.kubeconfig)))
    bad = _config_map(namespace, "Bad_Name", {"k": "v"})
    with pytest.raises(ApiException) as raised:
        kube.create_if_absent(bad)
    failure = parse_failure(raised.value.status, raised.value.body)
    assert raised.value.status == 422 and failure.refused
    assert "metadata.name" in failure.fields, failure
    with pytest.raises(ApiException) as raised:
        kube.apply(_config_map(namespace, "c", {"bad/key": "v"}))
    assert raised.value.status == 422 and "data[bad/key]" in parse_failure(422, raised.value.body).describe()


def test_status_patch_events_and_logs_with_a_bearer_token(
    control_plane: ControlPlane, namespace: str, crd: dict[str, Any]
) -> None:
    """A service account's token (what the operator's pod uses in a cluster), with RBAC from the chart's rules."""
    admin = control_plane.api_client()
    k8s.CoreV1Api(admin).create_namespaced_service_account(namespace, {"metadata": {"name": "op"}})
    rbac = k8s.RbacAuthorizationV1Api(admin)
    rules = [
        {"apiGroups": ["reasoning-operator.dev"], "resources": ["reasoningruns", "reasoningruns/status"],
         "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "list"]},
    ]  # fmt: skip
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "op"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "op"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "op"},
            "subjects": [{"kind": "ServiceAccount", "name": "op", "namespace": namespace}],
        },
    )
    body = {
        "apiVersion": "reasoning-operator.dev/v1alpha1",
        "kind": "ReasoningRun",
        "metadata": {"name": "tok"},
        "spec": {"dataset": {"source": "/data/d"}, "model": {"name": "m"}, "storage": {"existingClaim": "c"}},
    }
    k8s.CustomObjectsApi(admin).create_namespaced_custom_object(
        "reasoning-operator.dev", "v1alpha1", namespace, "reasoningruns", body
    )
    api = load_config(str(control_plane.kubeconfig_for_service_account(namespace, "op")))
    assert api.configuration.auth_settings().get("BearerToken"), "the kubeconfig carries a token"
    # The session's operator (other e2e tests start one for all namespaces) may reconcile this run too: what is
    # checked is each write's own answer, which the RunStore keeps, and this test's own Event.
    store = RunStore()
    kube = Kube(api, runs=store)
    assert kube.get_run(namespace, "nope") is None
    obj = kube.get_run(namespace, "tok")
    assert obj is not None and obj["metadata"]["name"] == "tok"
    store.offer(obj)
    assert kube.list_runs([namespace]) == [(namespace, "tok")]
    assert [r["metadata"]["name"] for r in kube.runs_in(namespace)] == ["tok"]
    kube.patch_status(namespace, "tok", {"failureReason": "first"})
    assert ((store.get(namespace, "tok") or {}).get("status") or {}).get("failureReason") == "first"
    kube.patch_status(namespace, "tok", {"failureReason": None})  # merge patch: a null deletes the key
    assert "failureReason" not in ((store.get(namespace, "tok") or {}).get("status") or {})
    run = Run.from_object(store.get(namespace, "tok") or {})
    kube.post_event(run, Event("Normal", "Tested", "a message"))
    events = kube._items("Event", namespace, fieldSelector="involvedObject.name=tok,reason=Tested")
    assert [(e["reason"], e["source"]["component"], e["involvedObject"]["uid"]) for e in events] == [
        ("Tested", FIELD_MANAGER, obj["metadata"]["uid"])
    ]
    # without RBAC for pods/log: no progress, no exception (a log is best effort)
    assert kube.log_tail(namespace, "no-such-pod") is None
    with pytest.raises(ApiException) as raised:  # forbidden: the token really is the service account's
        Rest(api).request("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert raised.value.status == 403
