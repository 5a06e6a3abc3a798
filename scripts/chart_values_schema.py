"""The Helm chart's values as pydantic models; writes charts/reasoning-operator/values.schema.json.

`python scripts/chart_values_schema.py` writes the schema, `--check` fails when it is stale
(tests/chart/test_chart_static.py runs the check and also asserts that values.yaml equals the defaults
below, so the three never drift apart). Job images reuse the API's own `ImagesSpec`, so their defaults
are the ones the CRD carries.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from reasoning_operator.api import ImagesSpec  # noqa: E402

CHART = REPO / "charts" / "reasoning-operator"
SCHEMA_PATH = CHART / "values.schema.json"

Port = Annotated[int, Field(ge=1, le=65535)]
K8sName = Annotated[str, Field(pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$", max_length=63)]
Object = dict[str, Any]


class Values(BaseModel):
    """camelCase keys like the rest of Helm; unknown keys are errors (a typo must not pass silently)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Image(Values):
    repository: str = Field(default="ghcr.io/reasoning-operator/operator", min_length=1)
    tag: str = Field(default="", description="Empty: the chart's appVersion.")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


class Watch(Values):
    all_namespaces: bool = Field(default=True, description="ClusterRole and --all-namespaces.")
    namespaces: list[K8sName] = Field(
        default_factory=list, description="With allNamespaces false: a Role in each (default: the release's)."
    )


class OperatorSettings(Values):
    resync_seconds: float = Field(default=10, gt=0, description="--resync-seconds")
    log_format: Literal["plain", "json"] = Field(default="json", description="--log-format")
    verbose: bool = False
    workers: int = Field(default=8, ge=1, le=256, description="Concurrent reconciles (REASONING_WORKERS).")
    shards: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Operator processes the runs are spread over, by a hash of namespace/name (REASONING_SHARDS); "
        "0: one per CPU the container may use, at most 8.",
    )
    metrics_port: Port = Field(default=8080, description="--metrics-port")
    health_port: Port = Field(default=8081, description="--health-port: /healthz (liveness) and /readyz (readiness).")


class RunDefaults(Values):
    admission_policy: bool = Field(
        default=False,
        description="Install a MutatingAdmissionPolicy (Kubernetes >= 1.36) that swaps built-in image defaults.",
    )
    images: ImagesSpec = Field(default_factory=ImagesSpec)


class RayCluster(Values):
    enabled: bool = Field(
        default=False,
        description="Grant the operator KubeRay RayJobs (ray.io) for runs with spec.curation.cluster; needs KubeRay.",
    )


class Curation(Values):
    ray_cluster: RayCluster = Field(default_factory=RayCluster)


class ServiceAccount(Values):
    create: bool = True
    name: str = ""
    annotations: dict[str, str] = Field(default_factory=dict)


class Rbac(Values):
    create: bool = True


class MetricsService(Values):
    enabled: bool = True
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    port: Port = 8080


class ServiceMonitor(Values):
    enabled: bool = False
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    scrape_timeout: str = Field(default="10s", pattern=r"^[0-9]+(ms|s|m|h)$")
    labels: dict[str, str] = Field(default_factory=dict)


class Metrics(Values):
    service: MetricsService = Field(default_factory=MetricsService)
    service_monitor: ServiceMonitor = Field(default_factory=ServiceMonitor)


class Dashboard(Values):
    enabled: bool = True
    namespace: str = ""
    labels: dict[str, str] = Field(default_factory=lambda: {"grafana_dashboard": "1"})
    annotations: dict[str, str] = Field(default_factory=dict)


def _resources() -> Object:
    return {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}


def _pod_security() -> Object:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security() -> Object:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


class ChartValues(Values):
    """Kubernetes-typed fragments (resources, security contexts, affinity) stay free-form objects: the
    rendered manifests are validated against the Kubernetes schemas in tests/chart instead."""

    image: Image = Field(default_factory=Image)
    image_pull_secrets: list[Object] = Field(default_factory=list)
    name_override: str = ""
    fullname_override: str = ""
    watch: Watch = Field(default_factory=Watch)
    operator: OperatorSettings = Field(default_factory=OperatorSettings)
    run_defaults: RunDefaults = Field(default_factory=RunDefaults)
    curation: Curation = Field(default_factory=Curation)
    service_account: ServiceAccount = Field(default_factory=ServiceAccount)
    rbac: Rbac = Field(default_factory=Rbac)
    metrics: Metrics = Field(default_factory=Metrics)
    dashboard: Dashboard = Field(default_factory=Dashboard)
    resources: Object = Field(default_factory=_resources)
    pod_security_context: Object = Field(default_factory=_pod_security)
    security_context: Object = Field(default_factory=_container_security)
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    pod_labels: dict[str, str] = Field(default_factory=dict)
    priority_class_name: str = ""
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Object] = Field(default_factory=list)
    affinity: Object = Field(default_factory=dict)
    global_: Object = Field(default_factory=dict, alias="global", description="Set by Helm for subcharts.")


def defaults() -> dict[str, Any]:
    """values.yaml as the model sees it (without Helm's `global`)."""
    return ChartValues().model_dump(mode="json", by_alias=True, exclude={"global_"})


def render() -> str:
    schema = ChartValues.model_json_schema(by_alias=True, mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not SCHEMA_PATH.exists() or SCHEMA_PATH.read_text(encoding="utf-8") != text:
            stale = SCHEMA_PATH.relative_to(REPO)
            print(f"stale: {stale} (run python scripts/chart_values_schema.py)", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA_PATH.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
