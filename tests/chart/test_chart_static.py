"""The chart without a cluster: lint, render with several values files, validate every manifest against the
Kubernetes 1.36 OpenAPI schemas (kubernetes-validate, offline, strict), and check what must hold in every
rendering: restricted pod security, least-privilege RBAC, the generated CRD, the values schema."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tests.chart.chart_tools import CHART, KUBE_VERSION, REPO, VALUES_DIR, VALUES_FILES, by_kind, helm, one, render

from reasoning_operator import metrics
from reasoning_operator.api.crd import render as render_crd

sys.path.insert(0, str(REPO / "scripts"))
import chart_values_schema

#: Kinds that are not part of Kubernetes itself (validated by their own checks below).
NON_CORE_KINDS = {"ServiceMonitor"}
DEFAULT = VALUES_DIR / "default.yaml"
NAMESPACED = VALUES_DIR / "namespaced.yaml"
MONITOR = VALUES_DIR / "servicemonitor.yaml"


def test_values_files_cover_the_three_modes() -> None:
    assert {DEFAULT, NAMESPACED, MONITOR} <= set(VALUES_FILES)


def test_values_schema_is_generated_from_the_model_and_values_yaml_matches_it() -> None:
    assert chart_values_schema.main(["--check"]) == 0, "run python scripts/chart_values_schema.py"
    assert yaml.safe_load((CHART / "values.yaml").read_text()) == chart_values_schema.defaults()
    # Job images default to the API's own defaults (the CRD's), not a copy that could drift.
    crd = yaml.safe_load((CHART / "crds" / "reasoningruns.yaml").read_text())
    images = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["images"]
    assert chart_values_schema.defaults()["runDefaults"]["images"] == {
        k: v["default"] for k, v in images["properties"].items()
    }


def test_chart_ships_the_generated_crd() -> None:
    assert (CHART / "crds" / "reasoningruns.yaml").read_text() == render_crd()
    crd = one(render(DEFAULT), "CustomResourceDefinition")
    assert crd["metadata"]["name"] == "reasoningruns.reasoning-operator.dev"


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.stem)
def test_helm_lint(values: Path) -> None:
    out = helm("lint", "--strict", str(CHART), "--values", str(values), "--kube-version", KUBE_VERSION).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.stem)
def test_rendered_manifests_match_the_kubernetes_schemas(values: Path) -> None:
    docs = render(values)
    checked = 0
    for doc in docs:
        if doc["kind"] in NON_CORE_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']}: {err.message} at {list(err.path)}") from err
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("values", VALUES_FILES, ids=lambda p: p.stem)
def test_operator_pod_meets_the_restricted_pod_security_standard(values: Path) -> None:
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert "privileged" not in sc
    # The read-only root filesystem still has a writable /tmp.
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    # Both probes hit kopf's liveness endpoint on the port given to --health-port.
    # Liveness stays 200 while the apiserver is away (an outage is waited out); readiness says it is away.
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert f"--health-port={ports['health']}" in container["args"]
    assert f"--metrics-port={ports['metrics']}" in container["args"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def _rules(docs: list[dict[str, Any]], kind: str) -> list[list[dict[str, Any]]]:
    return [d["rules"] for d in by_kind(docs, kind)]


def test_rbac_is_least_privilege_in_both_modes() -> None:
    cluster = render(DEFAULT)
    namespaced = render(NAMESPACED)
    (cluster_rules,) = _rules(cluster, "ClusterRole")
    assert _rules(cluster, "Role") == []
    assert _rules(namespaced, "ClusterRole") == [] and by_kind(namespaced, "ClusterRoleBinding") == []
    roles = by_kind(namespaced, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml", "research"]
    assert sorted(b["metadata"]["namespace"] for b in by_kind(namespaced, "RoleBinding")) == ["ml", "research"]
    for role in roles:
        assert role["rules"] == cluster_rules  # the same verbs, only the scope differs
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in cluster_rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for (group, resource), verbs in granted.items():
        assert "*" not in verbs and group != "*" and resource != "*", (group, resource)
    assert ("", "secrets") not in granted
    assert not any(group == "rbac.authorization.k8s.io" for group, _ in granted)
    assert not any(resource in {"nodes", "namespaces", "customresourcedefinitions"} for _, resource in granted)
    # The run itself: read only (no finalizers: the resync is an operator-wide loop, not kopf timers); never
    # patched, updated, created or deleted. Status has its own subresource.
    assert granted[("reasoning-operator.dev", "reasoningruns")] == {"get", "list", "watch"}
    assert granted[("reasoning-operator.dev", "reasoningruns/status")] == {"patch"}
    # Jobs are patched only to (un)suspend them; Kueue's Workloads are read (why a Job waits) and patched
    # (spec.active, for spec.suspend), never created or deleted.
    assert granted[("batch", "jobs")] == {"get", "list", "watch", "create", "patch"}
    assert granted[("kueue.x-k8s.io", "workloads")] == {"get", "list", "watch", "patch"}
    binding = one(cluster, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] != "cluster-admin"
    (subject,) = binding["subjects"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": one(cluster, "ServiceAccount")["metadata"]["name"],
        "namespace": "reasoning-system",
    }


def test_ray_rbac_only_when_the_ray_cluster_feature_is_enabled() -> None:
    def ray_rules(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
        return [rule for rules in _rules(docs, kind) for rule in rules if "ray.io" in rule["apiGroups"]]

    assert ray_rules(render(DEFAULT), "ClusterRole") == []
    assert ray_rules(render(NAMESPACED), "Role") == []
    on = ("--set", "curation.rayCluster.enabled=true")
    (cluster_rule,) = ray_rules(render(DEFAULT, *on), "ClusterRole")
    assert cluster_rule == {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["get", "list", "create"]}
    # Namespaced: in each watched namespace's Role, the same rule.
    assert ray_rules(render(NAMESPACED, *on), "Role") == [cluster_rule, cluster_rule]


def test_watch_mode_sets_the_operator_flags() -> None:
    cluster_args = one(render(DEFAULT), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert cluster_args[:2] == ["operator", "--all-namespaces"]
    assert "--log-format=json" in cluster_args
    args = one(render(NAMESPACED), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=ml", "--namespace=research"]
    assert "--all-namespaces" not in args and "--verbose" in args and "--log-format=plain" in args
    # No list: the release namespace alone.
    only_release = render(None, "--set", "watch.allNamespaces=false", namespace="team-a")
    assert one(only_release, "Role")["metadata"]["namespace"] == "team-a"
    args = one(only_release, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args


def test_single_operator_replica_with_recreate_rollouts() -> None:
    spec = one(render(DEFAULT), "Deployment")["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}


def test_service_monitor_scrapes_the_metrics_service() -> None:
    assert by_kind(render(DEFAULT), "ServiceMonitor") == []
    docs = render(MONITOR)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(docs, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["interval"] == "15s"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    pod = one(docs, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    failed = helm(
        "template", "ro", str(CHART), "--values", str(MONITOR), "--set", "metrics.service.enabled=false", check=False
    )
    assert failed.returncode != 0 and "needs metrics.service.enabled" in failed.stderr


def test_run_defaults_policy_patches_only_changed_builtin_images() -> None:
    assert by_kind(render(DEFAULT), "MutatingAdmissionPolicy") == []
    docs = render(NAMESPACED)
    policy = one(docs, "MutatingAdmissionPolicy")
    expressions = [m["jsonPatch"]["expression"] for m in policy["spec"]["mutations"]]
    # curation, training and pullPolicy differ from the built-in defaults; serving and evaluation do not.
    patched = sorted(re.search(r'path: "/spec/images/(\w+)"', e).group(1) for e in expressions)  # type: ignore[union-attr]
    assert patched == ["curation", "pullPolicy", "training"]
    curation = next(e for e in expressions if "/spec/images/curation" in e)
    assert 'object.spec.images.curation == "ghcr.io/reasoning-operator/curation:0.1.0"' in curation
    assert '"registry.example.com/mirror/curation:0.1.0"' in curation
    binding = one(docs, "MutatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    (expr,) = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert expr["values"] == ["ml", "research"]
    # Values equal to the built-in defaults: nothing to patch, so no policy at all.
    assert by_kind(render(None, "--set", "runDefaults.admissionPolicy=true"), "MutatingAdmissionPolicy") == []


def test_values_schema_rejects_typos_and_bad_values() -> None:
    for bad, needle in (
        ("watch.allNamespace=true", "allNamespace"),
        ("operator.logFormat=xml", "logFormat"),
        ("runDefaults.images.pullPolicy=Sometimes", "pullPolicy"),
        ("operator.healthPort=0", "healthPort"),
    ):
        result = helm("template", "ro", str(CHART), "--set", bad, check=False)
        assert result.returncode != 0, bad
        assert needle in result.stderr, result.stderr


def _metric_names() -> set[str]:
    """Every series name the operator and the serving pods can export (counters' _total, histograms' _bucket,
    ... included)."""
    from reasoning_jobs.serve.metrics import ServingMetrics

    return set(metrics.REGISTRY._names_to_collectors) | set(ServingMetrics().registry._names_to_collectors)


def test_dashboard_configmap_is_labelled_and_queries_only_real_metrics() -> None:
    docs = render(MONITOR)
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(cm["data"]["reasoning-operator.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "reasoning-operator.json").read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Runs by phase", "Stage durations", "Training progress", "Accuracy per run"} <= titles
    known = _metric_names()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b(reasoning_[a-z_]+)\b", e)}
    assert used and used <= known, f"unknown metrics: {used - known}"
    assert {"reasoning_runs", "reasoning_stage_duration_seconds", "reasoning_eval_accuracy"} <= used
    assert {"reasoning_serving_request_duration_seconds_bucket", "reasoning_serving_thinking_tokens_total"} <= used
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert by_kind(render(None, "--set", "dashboard.enabled=false"), "ConfigMap") == []
