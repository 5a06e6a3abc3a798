"""A real Kubernetes control plane for tests, started and stopped by the tests themselves.

Processes (all listening on 127.0.0.1 only, on free ports, logging to ``<work_dir>/logs/<name>.log``):
etcd, kube-apiserver (Node,RBAC authorization; default admission plugins + NodeRestriction; service-account
issuer/signing key), kube-controller-manager (Job, CronJob, garbage collector, Deployment/ReplicaSet,
namespace, service-account + token, TTL-after-finished, node lifecycle, pod GC, ... with
``--use-service-account-credentials`` so controllers go through real RBAC), kube-scheduler and kwok.
Binaries come from ``scripts/controlplane/build.sh`` (built once, cached outside the repository).

Fake nodes (annotated ``kwok.x-k8s.io/node: fake``, the only nodes kwok manages):

* ``gpu-h100-0``: ``nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3``, ``nvidia.com/gpu.present=true``,
  ``nvidia.com/gpu: 8``, cpu 64, memory 512Gi, taint ``nvidia.com/gpu=present:NoSchedule``;
* ``gpu-a100-0``: the same with ``nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB``;
* ``cpu-0``: no GPU, cpu 32, memory 128Gi.

The fake kubelet's contract (kwok Stages in ``scripts/controlplane/kwok/stages/``):

1. A pod bound to a kwok node becomes ``Running`` and ``Ready`` at once: every container running and
   ready, conditions Initialized/Ready/ContainersReady True (so Deployments become Available).
2. A Running pod stays Running until it is annotated ``fake.reasoning.dev/outcome: Succeeded`` or
   ``Failed``. kwok then moves it to that phase with every container ``terminated`` (exitCode 0 / reason
   Completed, or exitCode 1 / reason Error) and ``terminated.message`` set from the annotation
   ``fake.reasoning.dev/message`` when present: that is how a test plays the job process writing its
   termination message. The restartPolicy is not simulated (Failed is always a Failed pod).
   ``tests/support/fake_kubelet.py`` has helpers for this.
3. A pod with a deletionTimestamp is removed, so the Job controller, ReplicaSets and the garbage
   collector behave as on a real cluster.

Fake addresses: nodes report ``127.0.0.1`` (kwok's own server) and pods get IPs from 127.244.0.0/16; the
service cluster-IP range is 10.96.0.0/16, which nothing routes (there is no kube-proxy): never connect to it.

Child processes share one process group, killed on :meth:`ControlPlane.stop`, at interpreter exit, and
(through ``PR_SET_PDEATHSIG``) when the thread that started them dies, even by SIGKILL.

Manual use: ``python -m tests.support.controlplane`` (or ``scripts/controlplane/up.sh``).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS_DIR = REPO_ROOT / "scripts" / "controlplane"
BUILD_SCRIPT = SCRIPTS_DIR / "build.sh"
KWOK_CONFIG_DIR = SCRIPTS_DIR / "kwok"

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"
A100_PRODUCT = "NVIDIA-A100-SXM4-80GB"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
CONTROLLERS = (
    "job-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "cronjob-controller",
    "garbage-collector-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "ttl-after-finished-controller",
    "node-lifecycle-controller",
    "pod-garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "resourcequota-controller",
    "disruption-controller",
)

_LOG_TAIL_LINES = 60


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def build_binaries(*, build: bool = True) -> Path:
    """Run ``scripts/controlplane/build.sh`` (a no-op once cached) and return the bin dir it prints.

    With ``build=False`` only look: raise :class:`ControlPlaneError` when a binary is missing.
    """
    args = ["bash", str(BUILD_SCRIPT)] + ([] if build else ["--print-bin-dir"])
    env = dict(os.environ)
    if shutil.which("go", path=env.get("PATH")) is None and Path("/usr/local/go/bin/go").exists():
        env["PATH"] = env.get("PATH", "") + os.pathsep + "/usr/local/go/bin"
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=None, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ControlPlaneError(f"{' '.join(args)} failed (exit {proc.returncode}); stdout: {proc.stdout!r}")
    return Path(lines[-1])


def ensure_default_service_account(core: Any, namespace: str) -> None:
    """The namespace's ``default`` ServiceAccount, made here if the ServiceAccount controller has not yet.

    That controller makes it on its own, but on a loaded 2-core CI machine its queue can lag past any fixed
    wait; creating it is what the controller would do (409: it won)."""
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
    except k8s_client.ApiException as err:
        if err.status != 409:
            raise


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_nodes() -> list[dict[str, Any]]:
    """The three fake nodes every control plane registers."""

    def node(
        name: str, labels: dict[str, str], resources: dict[str, str], taints: list[dict[str, str]]
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    **labels,
                },
            },
            "spec": {"taints": taints},
            "status": {"capacity": dict(resources), "allocatable": dict(resources)},
        }

    def gpu_node(name: str, product: str) -> dict[str, Any]:
        return node(
            name,
            {GPU_PRODUCT_LABEL: product, GPU_PRESENT_LABEL: "true"},
            {"cpu": "64", "memory": "512Gi", "pods": "110", "ephemeral-storage": "1Ti", GPU_RESOURCE: "8"},
            [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}],
        )

    return [
        gpu_node("gpu-h100-0", H100_PRODUCT),
        gpu_node("gpu-a100-0", A100_PRODUCT),
        node("cpu-0", {}, {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "1Ti"}, []),
    ]


# --------------------------------------------------------------------------------------------- PKI


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_key: Path
    sa_pub: Path
    dir: Path

    def client(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _make_pki(directory: Path, clients: dict[str, tuple[str, str | None]], extra_ips: Sequence[str] = ()) -> _Pki:
    """A CA, an apiserver serving cert (also valid for ``extra_ips``), client certs ``{file name: (CN, O)}``
    and the service-account key."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reasoning-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(
        cn: str, org: str | None, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None = None
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    service_ip = next(ipaddress.IPv4Network(SERVICE_CIDR).hosts())
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in extra_ips),
        x509.IPAddress(service_ip),
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
    ]
    serving_cert, serving_key = leaf("kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, sans)

    pki = _Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_key=directory / "sa.key",
        sa_pub=directory / "sa.pub",
        dir=directory,
    )
    _write_cert(pki.ca_cert, ca_cert)
    _write_key(pki.ca_key, ca_key)
    _write_cert(pki.serving_cert, serving_cert)
    _write_key(pki.serving_key, serving_key)
    for file_name, (cn, org) in clients.items():
        cert, key = leaf(cn, org, ExtendedKeyUsageOID.CLIENT_AUTH)
        crt_path, key_path = pki.client(file_name)
        _write_cert(crt_path, cert)
        _write_key(key_path, key)

    sa_key = ec.generate_private_key(ec.SECP256R1())  # ES256 service-account tokens
    _write_key(pki.sa_key, sa_key)
    pki.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki


def issue_client_certificate(pki_dir: Path, file_name: str, cn: str, org: str | None) -> tuple[Path, Path]:
    """Sign one more client certificate with the CA in ``pki_dir`` (e.g. a kubelet's ``system:node:<name>``
    credential); returns (cert, key) paths ``<pki_dir>/<file_name>.crt|.key``."""
    ca_cert = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ControlPlaneError("the test CA key is not an EC key")
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    crt_path, key_path = pki_dir / f"{file_name}.crt", pki_dir / f"{file_name}.key"
    _write_cert(crt_path, cert)
    _write_key(key_path, key)
    return crt_path, key_path


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_cert: Path,
    user: str,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """Write a self-contained kubeconfig (certificates embedded) for one user; JSON, which is valid YAML."""
    credentials: dict[str, str] = {}
    if client_cert is not None and client_key is not None:
        credentials["client-certificate-data"] = _b64(client_cert)
        credentials["client-key-data"] = _b64(client_key)
    if token is not None:
        credentials["token"] = token
    if not credentials:
        raise ValueError("a kubeconfig needs a client certificate or a token")
    context: dict[str, str] = {"cluster": "reasoning-test", "user": user}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "reasoning-test", "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": context}],
        "current-context": user,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------------------- processes


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"
        return "\n".join(text.splitlines()[-lines:])


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on 127.0.0.1.

    Use as a context manager or call :meth:`start` / :meth:`stop`. After start, :attr:`kubeconfig` is an
    admin (``system:masters``) kubeconfig and :meth:`api_client` returns a ``kubernetes.client.ApiClient``.
    """

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        work_dir: Path | None = None,
        keep_work_dir: bool | None = None,
        startup_timeout: float = 90.0,
        nodes: Sequence[dict[str, Any]] | None = None,
        verbosity: int = 1,
        apiserver_address: str = "127.0.0.1",
        extra_controllers: Sequence[str] = (),
    ) -> None:
        """``apiserver_address``: where the apiserver listens and what it advertises as the ``kubernetes``
        Service's endpoint; a real node's pods need a non-loopback one (``tests/support/node.py``).
        ``extra_controllers``: more kube-controller-manager controllers (e.g. ``endpointslice-controller``,
        which only a real kube-proxy needs)."""
        self._bin_dir = bin_dir
        self._requested_work_dir = work_dir
        if keep_work_dir is None:
            keep_work_dir = os.environ.get("REASONING_CONTROLPLANE_KEEP", "") not in ("", "0")
        self._keep_work_dir = keep_work_dir
        self._startup_timeout = startup_timeout
        self._nodes = list(default_nodes() if nodes is None else nodes)
        self._verbosity = verbosity
        self._apiserver_address = apiserver_address
        self._controllers = (*CONTROLLERS, *extra_controllers)
        self._processes: list[_Process] = []
        self._pgid: int | None = None
        self._work_dir: Path | None = None
        self._pki: _Pki | None = None
        self._ports: dict[str, int] = {}
        self._admin_client: Any = None
        self._stopped = False

    # ----------------------------------------------------------------------------- public surface

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise ControlPlaneError("control plane not started")
        return self._work_dir

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client certificate in group ``system:masters``)."""
        return self.work_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self._apiserver_address}:{self._ports['apiserver']}"

    @property
    def ca_cert(self) -> Path:
        return self._require_pki().ca_cert

    @property
    def bin_dir(self) -> Path:
        """Where the binaries are (``kubectl`` included)."""
        if self._bin_dir is None:
            raise ControlPlaneError("control plane not started")
        return self._bin_dir

    @property
    def node_names(self) -> list[str]:
        return [str(n["metadata"]["name"]) for n in self._nodes]

    def api_client(self, kubeconfig: Path | None = None) -> k8s_client.ApiClient:
        """A new ``kubernetes.client.ApiClient`` for ``kubeconfig`` (default: the admin kubeconfig)."""
        new_client = cast(Callable[..., k8s_client.ApiClient], k8s_config.new_client_from_config)
        return new_client(config_file=str(kubeconfig or self.kubeconfig))

    def kubeconfig_for_token(self, token: str, *, user: str = "token-user", namespace: str | None = None) -> Path:
        """Write a kubeconfig that authenticates with a bearer ``token``; returns its path."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in user)
        path = self.work_dir / "kubeconfigs" / f"{safe}-{os.urandom(3).hex()}.kubeconfig"
        return write_kubeconfig(
            path, server=self.server, ca_cert=self.ca_cert, user=user, token=token, namespace=namespace
        )

    def service_account_token(
        self, namespace: str, name: str, *, expiration_seconds: int = 3600, audiences: Sequence[str] = ()
    ) -> str:
        """A bound token for ServiceAccount ``namespace/name`` (TokenRequest API)."""
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        core: Any = k8s_client.CoreV1Api(self._admin())
        result = core.create_namespaced_service_account_token(name, namespace, {"spec": spec})
        return str(result.status.token)

    def kubeconfig_for_service_account(self, namespace: str, name: str, *, expiration_seconds: int = 3600) -> Path:
        """A kubeconfig acting as ServiceAccount ``namespace/name`` (so RBAC applies to it)."""
        token = self.service_account_token(namespace, name, expiration_seconds=expiration_seconds)
        return self.kubeconfig_for_token(token, user=f"system:serviceaccount:{namespace}:{name}", namespace=namespace)

    def process_logs(self) -> dict[str, Path]:
        return {p.name: p.log for p in self._processes}

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- start

    def start(self) -> None:
        if self._work_dir is not None:
            raise ControlPlaneError("control plane already started")
        bin_dir = self._bin_dir or build_binaries(build=False)
        missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"missing binaries in {bin_dir}: {missing}; run {BUILD_SCRIPT}")
        self._bin_dir = bin_dir
        if self._requested_work_dir is not None:
            self._requested_work_dir.mkdir(parents=True, exist_ok=True)
            self._work_dir = self._requested_work_dir
        else:
            self._work_dir = Path(tempfile.mkdtemp(prefix="reasoning-controlplane-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop(keep_work_dir=True)
            raise

    def _start(self) -> None:
        deadline = time.monotonic() + self._startup_timeout
        for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"):
            self._ports[name] = free_port()
        self._pki = _make_pki(
            self.work_dir / "pki",
            {
                "admin": ("kubernetes-admin", "system:masters"),
                "controller-manager": ("system:kube-controller-manager", None),
                "scheduler": ("system:kube-scheduler", None),
                "kwok": ("kwok-controller", "system:masters"),
                "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
            },
            extra_ips=[self._apiserver_address] if self._apiserver_address != "127.0.0.1" else [],
        )
        pki = self._pki
        for user in ("admin", "controller-manager", "scheduler", "kwok"):
            crt, key = pki.client(user)
            write_kubeconfig(
                self.work_dir / (f"{user}.kubeconfig" if user != "admin" else "kubeconfig"),
                server=self.server,
                ca_cert=pki.ca_cert,
                user=user,
                client_cert=crt,
                client_key=key,
            )

        self._start_etcd()
        self._wait_http("etcd", f"http://127.0.0.1:{self._ports['etcd']}/health", deadline, self._etcd_healthy)
        self._start_apiserver()
        self._wait_http("kube-apiserver", f"{self.server}/readyz", deadline, None, tls=self._admin_tls())
        self._start_controller_manager()
        self._start_scheduler()
        self._start_kwok()
        self._register_nodes()
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        for name, port in (("kube-controller-manager", "controller-manager"), ("kube-scheduler", "scheduler")):
            self._wait_http(name, f"https://127.0.0.1:{self._ports[port]}/healthz", deadline, None, tls=insecure)
        self._wait_http("kwok", f"http://127.0.0.1:{self._ports['kwok']}/healthz", deadline, None)
        self._wait_nodes_ready(deadline)

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"$ {' '.join(args)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env={**os.environ, **(env or {})},
                process_group=0 if self._pgid is None else self._pgid,
                preexec_fn=_set_pdeathsig if sys.platform == "linux" else None,
            )
        if self._pgid is None:
            self._pgid = popen.pid
        self._processes.append(_Process(name, popen, log))

    def _bin(self, name: str) -> str:
        assert self._bin_dir is not None
        return str(self._bin_dir / name)

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self._ports['etcd']}"
        peer = f"http://127.0.0.1:{self._ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                self._bin("etcd"),
                "--name=test",
                f"--data-dir={self.work_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=test={peer}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
        )

    def _start_apiserver(self) -> None:
        pki = self._require_pki()
        kubelet_crt, kubelet_key = pki.client("apiserver-kubelet-client")
        self._spawn(
            "kube-apiserver",
            [
                self._bin("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self._ports['etcd']}",
                f"--bind-address={self._apiserver_address}",
                f"--advertise-address={self._apiserver_address}",
                f"--secure-port={self._ports['apiserver']}",
                f"--cert-dir={self.work_dir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--kubelet-client-certificate={kubelet_crt}",
                f"--kubelet-client-key={kubelet_key}",
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",  # added to the default plugin set
                "--allow-privileged=true",
                # The `kubernetes` Service's endpoint: a loopback one is invalid, and only a real node uses it.
                f"--endpoint-reconciler-type={'none' if self._apiserver_address == '127.0.0.1' else 'lease'}",
                "--profiling=false",
                "--event-ttl=1h",
                f"--v={self._verbosity}",
            ],
        )

    def _start_controller_manager(self) -> None:
        pki = self._require_pki()
        self._spawn(
            "kube-controller-manager",
            [
                self._bin("kube-controller-manager"),
                f"--kubeconfig={self.work_dir / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self._ports['controller-manager']}",
                f"--cert-dir={self.work_dir / 'controller-manager-certs'}",
                f"--controllers={','.join(self._controllers)}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--leader-elect=false",
                "--node-monitor-period=1s",
                "--cluster-name=reasoning-test",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--profiling=false",
                f"--v={self._verbosity}",
            ],
        )

    def _start_scheduler(self) -> None:
        self._spawn(
            "kube-scheduler",
            [
                self._bin("kube-scheduler"),
                f"--kubeconfig={self.work_dir / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self._ports['scheduler']}",
                f"--cert-dir={self.work_dir / 'scheduler-certs'}",
                "--leader-elect=false",
                "--profiling=false",
                f"--v={self._verbosity}",
            ],
        )

    def _start_kwok(self) -> None:
        configs = [KWOK_CONFIG_DIR / "kwok.yaml", *sorted((KWOK_CONFIG_DIR / "stages").glob("*.yaml"))]
        kwok_home = self.work_dir / "kwok-home"  # kwok also reads ~/.kwok/kwok.yaml: keep it out
        kwok_home.mkdir(exist_ok=True)
        self._spawn(
            "kwok",
            [
                self._bin("kwok"),
                *(f"--config={c}" for c in configs),
                f"--kubeconfig={self.work_dir / 'kwok.kubeconfig'}",
                f"--server-address=127.0.0.1:{self._ports['kwok']}",
                f"--node-port={self._ports['kwok']}",
            ],
            env={"HOME": str(kwok_home)},
        )

    def _register_nodes(self) -> None:
        core: Any = k8s_client.CoreV1Api(self._admin())
        for node in self._nodes:
            core.create_node(node)

    # ----------------------------------------------------------------------------------- waiting

    def _admin(self) -> Any:
        if self._admin_client is None:
            self._admin_client = self.api_client()
        return self._admin_client

    def _admin_tls(self) -> ssl.SSLContext:
        pki = self._require_pki()
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        crt, key = pki.client("admin")
        ctx.load_cert_chain(str(crt), str(key))
        return ctx

    @staticmethod
    def _etcd_healthy(body: str) -> bool:
        with contextlib.suppress(ValueError):
            return bool(json.loads(body).get("health") == "true")
        return False

    def _check_processes(self) -> None:
        for proc in self._processes:
            code = proc.popen.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{proc.name} exited with code {code}; last lines of {proc.log}:\n{proc.tail()}"
                )

    def _poll(self, what: str, deadline: float, probe: Callable[[], tuple[bool, str]], log_of: str | None) -> None:
        last = ""
        while True:
            self._check_processes()
            ok, last = probe()
            if ok:
                return
            if time.monotonic() > deadline:
                tail = ""
                for proc in self._processes:
                    if proc.name == log_of:
                        tail = f"; last lines of {proc.log}:\n{proc.tail()}"
                raise ControlPlaneError(f"timed out waiting for {what} (last: {last}){tail}")
            time.sleep(0.1)

    def _wait_http(
        self,
        name: str,
        url: str,
        deadline: float,
        check_body: Callable[[str], bool] | None,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        def probe() -> tuple[bool, str]:
            try:
                with urllib.request.urlopen(url, timeout=2, context=tls) as resp:
                    body = resp.read().decode(errors="replace")
                    return (resp.status == 200 and (check_body is None or check_body(body))), body[:200]
            except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
                return False, str(exc)

        self._poll(f"{name} at {url}", deadline, probe, name)

    def _wait_nodes_ready(self, deadline: float) -> None:
        core: Any = k8s_client.CoreV1Api(self._admin())
        wanted = set(self.node_names)

        def probe() -> tuple[bool, str]:
            ready: set[str] = set()
            for node in core.list_node().items:
                is_ready = any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
                # The node-lifecycle controller removes the not-ready taint (added at registration) once Ready.
                tainted = any(t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or [])
                if is_ready and not tainted:
                    ready.add(node.metadata.name)
            return wanted <= ready, f"ready and untainted nodes: {sorted(ready)}"

        self._poll(f"nodes {sorted(wanted)} to be Ready and schedulable", deadline, probe, "kwok")

    def _require_pki(self) -> _Pki:
        if self._pki is None:
            raise ControlPlaneError("control plane not started")
        return self._pki

    # -------------------------------------------------------------------------------------- stop

    def stop(self, *, keep_work_dir: bool | None = None) -> None:
        """Kill every process (whole process group) and remove the work dir unless asked to keep it."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        if self._admin_client is not None:
            with contextlib.suppress(Exception):
                self._admin_client.close()
        # SIGTERM all but etcd (the apiserver's graceful shutdown needs etcd: ~1 s), then SIGKILL the group.
        graceful = [p for p in self._processes if p.name != "etcd" and p.popen.poll() is None]
        for proc in graceful:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3
        for proc in graceful:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
        for proc in self._processes:
            proc.popen.wait()
        keep = self._keep_work_dir if keep_work_dir is None else keep_work_dir
        if self._work_dir is not None and not keep and self._requested_work_dir is None:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def iter_logs(self) -> Iterator[tuple[str, str]]:
        """(process name, last log lines) for each process: handy in a failing test's message."""
        for proc in self._processes:
            yield proc.name, proc.tail()


def main(argv: Sequence[str] | None = None) -> int:
    """Start the control plane in the foreground until Ctrl-C; print how to reach it."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.support.controlplane", description=main.__doc__)
    parser.add_argument("--work-dir", type=Path, help="keep state, logs and kubeconfig here (kept on exit)")
    args = parser.parse_args(argv)
    bin_dir = build_binaries()
    started = time.monotonic()
    plane = ControlPlane(bin_dir, work_dir=args.work_dir, keep_work_dir=args.work_dir is not None)
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    with plane:
        print(f"# control plane up in {time.monotonic() - started:.1f}s; logs in {plane.log_dir}", flush=True)
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print(f"# kubectl: {bin_dir / 'kubectl'}   (Ctrl-C stops everything)", flush=True)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop_requested:
            time.sleep(0.5)
            for proc in plane._processes:
                if proc.popen.poll() is not None:
                    print(f"{proc.name} exited; last lines:\n{proc.tail()}", file=sys.stderr)
                    return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
