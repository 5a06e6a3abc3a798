"""The real node: pods run, the cluster network works as for users, restricted pods run to completion with
their termination message read back, and GPU placement goes through the device plugin, the scheduler and the
kubelet's admission."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.node.conftest import busybox_pod, run_to_completion, termination_message, wait_pod
from tests.support.controlplane import H100_PRODUCT, ControlPlane
from tests.support.deviceplugin import VISIBLE_DEVICES_ENV
from tests.support.node import CLUSTER_DOMAIN, NODE_IP, NODE_NAME, RealNode

from reasoning_operator.core.builders.pod import GPU_RESOURCE, gpu_placement

pytestmark = pytest.mark.node

HTTP_PORT = 8080


def _started(pod: Any) -> bool:
    return bool(pod.status.phase == "Running" and pod.status.container_statuses[0].ready)


@pytest.fixture
def web(core: Any, namespace: str) -> Iterator[tuple[str, str]]:
    """An httpd pod (answering with its own name) and a ClusterIP Service in front of it: (pod IP, svc IP)."""
    script = (
        "mkdir -p /tmp/www && echo hello-from-$(hostname) > /tmp/www/index.html"
        f" && exec httpd -f -p {HTTP_PORT} -h /tmp/www"
    )
    pod = busybox_pod("web", script, ports=[HTTP_PORT], restart="Always")
    pod["spec"]["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/", "port": HTTP_PORT},
        "periodSeconds": 1,
    }
    core.create_namespaced_pod(namespace, pod)
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": HTTP_PORT}]},
        },
    )
    ready = wait_pod(core, namespace, "web", _started, 60, "the web pod to be Ready (its readiness probe)")
    svc = core.read_namespaced_service("web", namespace)
    yield ready.status.pod_ip, svc.spec.cluster_ip


def test_pods_run_on_the_real_node_with_pod_and_node_addresses(core: Any, namespace: str) -> None:
    pod, log = run_to_completion(core, namespace, busybox_pod("hello", "echo hi from $(hostname); id -u"))
    assert pod.status.phase == "Succeeded", (pod.status, log)
    assert pod.spec.node_name == NODE_NAME
    assert pod.status.host_ip == NODE_IP
    assert pod.status.pod_ip.startswith("10.244.0."), pod.status.pod_ip
    assert log.split() == ["hi", "from", "hello", "65532"]  # the log is read from the real kubelet


def test_pod_to_pod_service_cluster_ip_and_dns(core: Any, namespace: str, web: tuple[str, str]) -> None:
    pod_ip, svc_ip = web
    fqdn = f"web.{namespace}.svc.{CLUSTER_DOMAIN}"
    # Debian's static busybox wget segfaults in a scratch image; nc speaks enough HTTP/1.0 for this.
    script = f"""
set -e
get() {{ printf 'GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n' | nc -w 5 "$1" "$2" | tail -n 1; }}
direct=$(get {pod_ip} {HTTP_PORT})
via_svc=$(get {svc_ip} 80)
via_dns=$(get {fqdn} 80)
short=$(get web 80)
resolved=$(nslookup {fqdn} | awk '/^Address/ {{a=$NF}} END {{print a}}')
printf '{{"direct":"%s","svc":"%s","dns":"%s","short":"%s","resolved":"%s"}}' \\
  "$direct" "$via_svc" "$via_dns" "$short" "$resolved" > /dev/termination-log
"""
    pod, log = run_to_completion(core, namespace, busybox_pod("client", script))
    assert pod.status.phase == "Succeeded", (pod.status, log)
    result = json.loads(termination_message(pod))
    assert result == {
        "direct": "hello-from-web",  # pod to pod over the CNI bridge
        "svc": "hello-from-web",  # ClusterIP through kube-proxy's rules
        "dns": "hello-from-web",  # <svc>.<ns>.svc.cluster.local through CoreDNS behind kube-dns
        "short": "hello-from-web",  # the search path the kubelet writes into resolv.conf
        "resolved": svc_ip,
    }


def test_pods_reach_the_apiserver_through_the_kubernetes_service(core: Any, namespace: str) -> None:
    """What an in-cluster client (the operator pod) needs: ``kubernetes.default.svc`` resolves to the Service
    and kube-proxy forwards it to the apiserver on the node IP. Without TLS in busybox, a plain-HTTP request
    gets Go's TLS server's own answer, which only the apiserver's listener gives."""
    script = f"""
set -e
test -s /var/run/secrets/kubernetes.io/serviceaccount/token
printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | nc -w 5 kubernetes.default.svc.{CLUSTER_DOMAIN} 443 \\
  | head -c 200 > /dev/termination-log
"""
    pod, log = run_to_completion(core, namespace, busybox_pod("in-cluster", script))
    assert pod.status.phase == "Succeeded", (pod.status, log)
    message = termination_message(pod)
    assert message.startswith("HTTP/1.0 400 Bad Request"), message
    assert "Client sent an HTTP request to an HTTPS server" in message


def test_restricted_pod_succeeds_with_its_termination_message(core: Any, namespace: str) -> None:
    script = """
set -e
test "$(id -u):$(id -g)" = "65532:65532"
if touch /rootfs-probe 2>/dev/null; then echo root is writable; exit 3; fi
echo scratch > /tmp/probe
printf 'done: %s' "$(cat /tmp/probe)" > /dev/termination-log
"""
    pod, log = run_to_completion(core, namespace, busybox_pod("restricted", script))
    assert pod.status.phase == "Succeeded", (pod.status, log)
    assert termination_message(pod) == "done: scratch"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (0, "Completed")


def test_failed_pod_reports_exit_code_and_message(core: Any, namespace: str) -> None:
    pod, _ = run_to_completion(
        core, namespace, busybox_pod("fails", "printf 'stage broke' > /dev/termination-log; exit 7")
    )
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (7, "Error", "stage broke")


def test_restricted_namespace_rejects_a_root_pod(core: Any, namespace: str) -> None:
    from kubernetes.client import ApiException

    pod = busybox_pod("root", "true")
    pod["spec"]["securityContext"] = {}
    pod["spec"]["containers"][0]["securityContext"] = {}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(namespace, pod)
    assert err.value.status == 403 and "restricted" in str(err.value.body)


def _gpu_pod(name: str, gpus: int, *, placement: bool = True) -> dict[str, Any]:
    """A pod shaped like the training Job's: the GPU product affinity, the taint toleration, the GPU limit."""
    pod = busybox_pod(
        name,
        f'printf "%s" "${VISIBLE_DEVICES_ENV}" > /dev/termination-log',
        resources={
            "requests": {"cpu": "10m", "memory": "16Mi", GPU_RESOURCE: str(gpus)},
            "limits": {"cpu": "100m", "memory": "32Mi", GPU_RESOURCE: str(gpus)},
        },
    )
    if placement:
        pod["spec"].update(gpu_placement([H100_PRODUCT]))
    else:
        pod["spec"]["tolerations"] = []
    return pod


def _unschedulable_reason(core: Any, namespace: str, name: str) -> str:
    def pending(p: Any) -> bool:
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in p.status.conditions or [])

    pod = wait_pod(core, namespace, name, pending, 30, f"the scheduler to refuse {name}")
    assert pod.spec.node_name is None
    return str(next(c.message for c in pod.status.conditions if c.type == "PodScheduled"))


def test_gpu_pod_lands_on_the_real_node_through_the_device_plugin(
    core: Any, namespace: str, node_plane: tuple[ControlPlane, RealNode]
) -> None:
    node = core.read_node(NODE_NAME)
    assert node.status.allocatable[GPU_RESOURCE] == "1"  # advertised by the device plugin, not patched in
    assert node.metadata.labels["nvidia.com/gpu.product"] == H100_PRODUCT
    assert any(t.key == GPU_RESOURCE and t.effect == "NoSchedule" for t in node.spec.taints)

    pod, log = run_to_completion(core, namespace, _gpu_pod("train-like", 1))
    assert pod.status.phase == "Succeeded", (pod.status, log)
    assert pod.spec.node_name == NODE_NAME
    assert termination_message(pod) == "FAKE-GPU-0"  # the kubelet called the plugin's Allocate

    core.create_namespaced_pod(namespace, _gpu_pod("two-gpus", 2))
    assert f"Insufficient {GPU_RESOURCE}" in _unschedulable_reason(core, namespace, "two-gpus")
    core.create_namespaced_pod(namespace, _gpu_pod("no-toleration", 1, placement=False))
    assert "untolerated taint" in _unschedulable_reason(core, namespace, "no-toleration")
