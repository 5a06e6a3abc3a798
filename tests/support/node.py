"""One real Kubernetes node beside the test control plane: containerd + runc, kubelet, kube-proxy, CoreDNS.

Where the kwok nodes only pretend, this node runs containers, so the seams a user hits (mounts, users,
read-only roots, termination messages, probes, Service DNS) are exercised. Layout (root is needed):

* **Addresses.** The node IP (``198.18.0.1``, RFC 2544's benchmarking range) is a /32 on a bridge with no
  ports (``rnode0``): the kubelet refuses a loopback node IP, and nothing on it leaves the machine. The
  apiserver listens there too (``ControlPlane(apiserver_address=NODE_IP)``), so pods reach it through the
  ``kubernetes`` Service. A filter chain (``REASONING-NODE-GUARD``) drops traffic to the node IP and the
  pod range unless it comes from loopback or the pods' bridge.
* **containerd** (Debian's 1.6) with its own config, sockets and state under the work dir; its image root is
  cached under ``~/.cache/reasoning-operator/node/containerd`` so big images are imported once. CRI config as
  this machine needs: ``restrict_oom_score_adj``, cgroupfs, runc. CNI: bridge ``rcni0`` +
  host-local (``10.244.0.0/24``) + portmap; containerd adds loopback.
* **Images** are imported with ``ctr -n k8s.io images import`` (nothing is pulled): the pause image compiled
  from Kubernetes' ``pause.c`` and ``BUSYBOX_IMAGE`` (Debian's static busybox, made in ``oci.py``).
* **kubelet** with a ``system:node:<name>`` client certificate (so the Node authorizer and NodeRestriction
  apply), cgroupfs, ``failCgroupV1: false``, image GC and disk eviction effectively off (a CI disk may be
  fuller than 85 %), the GPU label and taint, cluster DNS ``10.96.0.10``.
* **kube-proxy** (iptables mode, user ``system:kube-proxy``); NodePorts only on the node IP.
* **CoreDNS** as a host process on the node IP with the ``kubernetes`` plugin, behind the Service
  ``kube-system/kube-dns`` (``10.96.0.10``) whose EndpointSlice points at the node IP: pods resolve
  ``<svc>.<ns>.svc.cluster.local`` through kube-proxy, as on a cluster.
* **GPU**: ``tests/support/deviceplugin.py`` registers ``nvidia.com/gpu`` with the kubelet's device-plugin
  API; the node carries ``nvidia.com/gpu.product`` and the ``nvidia.com/gpu=present:NoSchedule`` taint (the
  one real node is also the GPU node, so non-GPU test pods tolerate it).

One node per machine at a time (a lock in /run/lock): kube-proxy's chains and the bridges are host-wide.
:meth:`RealNode.stop` deletes the node's pods, kills what is left in containerd, stops every process,
unmounts what was mounted under the work dir, removes the cgroups, bridges and netns, runs
``kube-proxy --cleanup``, deletes the KUBE-* and REASONING-* iptables chains and rules that were not there
before, and restores the sysctls it changed.

Manual use: ``python -m tests.support.node`` (or ``scripts/node/up.sh``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from tests.support.controlplane import (
    GPU_PRESENT_LABEL,
    GPU_PRODUCT_LABEL,
    GPU_RESOURCE,
    H100_PRODUCT,
    REPO_ROOT,
    ControlPlane,
    ControlPlaneError,
    _Process,
    _set_pdeathsig,
    free_port,
    issue_client_certificate,
    write_kubeconfig,
)
from tests.support.deviceplugin import DEVICE_PLUGIN_DIR
from tests.support.oci import static_binary_image, write_oci_archive

NODE_BUILD_SCRIPT = REPO_ROOT / "scripts" / "node" / "build.sh"
DEPS_SCRIPT = REPO_ROOT / "scripts" / "node" / "deps.sh"
NODE_NAME = "reasoning-node-0"
NODE_IP = "198.18.0.1"
NODE_LINK = "rnode0"
POD_BRIDGE = "rcni0"
POD_SUBNET = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10.2"
BUSYBOX_IMAGE = "reasoning.test/busybox:1.35.0"
GUARD_CHAIN = "REASONING-NODE-GUARD"
NODE_EXTRA_CONTROLLERS = ("endpointslice-controller", "endpoints-controller")
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
CNI_BIN_DIR = Path("/usr/lib/cni")
LOCK_PATH = Path("/run/lock/reasoning-node.lock")
CACHE_ROOT = Path(os.environ.get("REASONING_CACHE", Path.home() / ".cache" / "reasoning-operator"))
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
OWNED_CHAIN_PREFIXES = ("KUBE-", "REASONING-")
CONTAINERD_ROOT = CACHE_ROOT / "node" / "containerd"
IMPORT_RECORDS = CONTAINERD_ROOT.parent / "containerd-imports.json"
SYSCTLS = {"net/ipv4/ip_forward": "1", "net/bridge/bridge-nf-call-iptables": "1"}


class NodeError(ControlPlaneError):
    """The real node could not be built, started or cleaned up."""


def build_node_binaries(*, build: bool = True) -> Path:
    """Install the Debian packages (idempotent), run ``scripts/node/build.sh`` and return its bin dir."""
    if build:
        subprocess.run(["bash", str(DEPS_SCRIPT)], check=True)
    args = ["bash", str(NODE_BUILD_SCRIPT)] + ([] if build else ["--print-bin-dir"])
    env = dict(os.environ)
    if shutil.which("go", path=env.get("PATH")) is None and Path("/usr/local/go/bin/go").exists():
        env["PATH"] = env.get("PATH", "") + os.pathsep + "/usr/local/go/bin"
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise NodeError(f"{' '.join(args)} failed (exit {proc.returncode}); stdout: {proc.stdout!r}")
    return Path(lines[-1])


def node_control_plane(bin_dir: Path | None = None, **kwargs: Any) -> ControlPlane:
    """A control plane a real node can join: apiserver on the node IP, EndpointSlices for kube-proxy, and no
    kwok nodes (so a pod that lands anywhere landed on the real node)."""
    kwargs.setdefault("nodes", [])
    return ControlPlane(bin_dir, apiserver_address=NODE_IP, extra_controllers=NODE_EXTRA_CONTROLLERS, **kwargs)


def _run(args: Sequence[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"{shlex.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc


def _remove_stale_guard() -> None:
    """The guard chain and its jumps left by a run that was killed before its teardown (a second -N fails with
    "Chain already exists"): removed before the rules are snapshotted, so teardown does not keep them either."""
    ipt = ["iptables", "-w", "-t", "filter"]
    if _run([*ipt, "-S", GUARD_CHAIN], check=False).returncode != 0:
        return
    for rule in _iptables_rules("filter"):
        if rule.startswith("-A ") and rule.endswith(f"-j {GUARD_CHAIN}"):
            _run([*ipt, "-D", *shlex.split(rule)[1:]], check=False)
    _run([*ipt, "-F", GUARD_CHAIN], check=False)
    _run([*ipt, "-X", GUARD_CHAIN], check=False)


def _iptables_rules(table: str) -> list[str]:
    out = _run(["iptables", "-w", "-t", table, "-S"], check=False).stdout
    return [line for line in out.splitlines() if line.strip()]


def _owned(rule: str) -> bool:
    """A rule or chain this node's processes create: named KUBE-*/REASONING-* or jumping to one."""
    words = rule.split()
    names = [words[1]] if len(words) > 1 else []
    if "-j" in words:
        names.append(words[words.index("-j") + 1])
    return any(n.startswith(OWNED_CHAIN_PREFIXES) for n in names)


@contextlib.contextmanager
def node_cluster(
    plane_bin_dir: Path | None = None, node_bin_dir: Path | None = None, **node_kwargs: Any
) -> Iterator[tuple[ControlPlane, RealNode]]:
    """The node's network first (the apiserver listens on the node IP), then the control plane, then the node;
    torn down in reverse."""
    node = RealNode(node_bin_dir, **node_kwargs)
    node.open_network()
    try:
        with node_control_plane(plane_bin_dir) as plane:
            node.start(plane)
            try:
                yield plane, node
            finally:
                node.stop()
    finally:
        node.stop()


class RealNode:
    """:meth:`open_network` before the control plane starts (it listens on the node IP), then :meth:`start`
    beside it, :meth:`stop` at the end (:func:`node_cluster` does all three)."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        *,
        gpu_count: int = 1,
        gpu_product: str = H100_PRODUCT,
        images: Sequence[Path] = (),
        startup_timeout: float = 120.0,
        keep_work_dir: bool | None = None,
    ) -> None:
        self._plane: ControlPlane | None = None
        self._admin_client: Any = None
        self._bin_dir = bin_dir
        self.gpu_count = gpu_count
        self.gpu_product = gpu_product
        self._extra_images = list(images)
        self._startup_timeout = startup_timeout
        if keep_work_dir is None:
            keep_work_dir = os.environ.get("REASONING_CONTROLPLANE_KEEP", "") not in ("", "0")
        self._keep = keep_work_dir
        self.name = NODE_NAME
        self.ip = NODE_IP
        self._processes: list[_Process] = []
        self._pgid: int | None = None
        self._work: Path | None = None
        self._lock_fd: int | None = None
        self._iptables_before: dict[str, list[str]] = {}
        self._sysctls_before: dict[str, str] = {}
        self._links: list[str] = []
        self._started = False
        self._stopped = False
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------------------ surface

    @property
    def plane(self) -> ControlPlane:
        if self._plane is None:
            raise NodeError("node not started")
        return self._plane

    @property
    def work_dir(self) -> Path:
        if self._work is None:
            raise NodeError("node not started")
        return self._work

    @property
    def log_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def containerd_socket(self) -> Path:
        return self.work_dir / "run" / "containerd.sock"

    def ctr(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return _run(["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args], timeout=timeout)

    def import_image(self, archive: Path) -> list[str]:
        """``ctr -n k8s.io images import`` an OCI or docker archive (the pods then use it without a pull);
        returns the references it imported (ctr prints ``unpacking REF (sha256:…)...done`` for each)."""
        out = self.ctr("images", "import", str(archive)).stdout
        return [line.split()[1] for line in out.splitlines() if line.startswith("unpacking ") and len(line.split()) > 1]

    def has_image(self, reference: str) -> bool:
        return reference in self.ctr("images", "ls", "-q", timeout=60).stdout.split()

    def image_digests(self) -> dict[str, str]:
        """Every image reference in the node's containerd (named, and the CRI's ``sha256:<config>`` ids) with
        its manifest digest."""
        lines = self.ctr("images", "ls", timeout=60).stdout.splitlines()[1:]
        return {words[0]: words[2] for words in (line.split() for line in lines) if len(words) > 2}

    def prune_images(self, keep: Sequence[str] = ()) -> list[str]:
        """Remove every image that is not the pause or busybox image, one recorded as imported, or in ``keep``,
        and every reference (the CRI's id refs too) to a manifest no kept name points at: a re-import under
        the same tag leaves the superseded image's id ref behind, and its layers and unpacked snapshots with
        it (the cache root survives runs, so it grew by one image version per rebuild). ``--sync`` waits for
        containerd's garbage collector to delete the content. Returns the references removed."""
        keep_names = {PAUSE_IMAGE, BUSYBOX_IMAGE, *self._import_records(), *keep}
        digests = self.image_digests()
        kept = {digests[name] for name in keep_names if name in digests}
        stale = sorted(ref for ref, digest in digests.items() if ref not in keep_names and digest not in kept)
        if stale:
            self.ctr("images", "rm", "--sync", *stale, timeout=600)
        return stale

    @staticmethod
    def _import_records() -> dict[str, str]:
        """reference -> podman image ID of what :meth:`import_podman_image` put into the cached root."""
        path = IMPORT_RECORDS
        return dict(json.loads(path.read_text())) if path.is_file() else {}

    def import_podman_image(self, reference: str, *, timeout: float = 1800) -> float:
        """Stream ``podman save`` (an uncompressed docker archive: gzip costs minutes on 2 cores) into
        ``ctr import``, unless this podman image ID was imported under ``reference`` into the cached containerd
        root before (a record next to it; the archive's config digest need not equal podman's ID). Returns
        seconds spent."""
        inspect = _run(["podman", "image", "inspect", "--format", "{{.Id}}", reference], timeout=60)
        image_id = inspect.stdout.strip()
        records = self._import_records()
        if records.get(reference) == image_id and self.has_image(reference):
            return 0.0
        started = time.monotonic()
        if self.has_image(reference):  # superseded: free its layers before the new version lands beside them
            self.ctr("images", "rm", "--sync", reference, timeout=600)
            self.prune_images()
        save = subprocess.Popen(["podman", "save", "--format", "docker-archive", reference], stdout=subprocess.PIPE)
        assert save.stdout is not None
        try:
            imported = subprocess.run(
                ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "images", "import", "-"],
                stdin=save.stdout,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        finally:
            save.stdout.close()
            try:
                save.wait(timeout=30)
            except subprocess.TimeoutExpired:  # ctr stops reading at the archive's end; podman may still write
                save.kill()
                save.wait()
        if imported.returncode != 0 or not self.has_image(reference):
            raise NodeError(f"importing {reference} failed: podman exit {save.returncode}; {imported.stderr}")
        records[reference] = image_id
        IMPORT_RECORDS.write_text(json.dumps(records, indent=2, sort_keys=True))
        self.discard_unpacked_layers(reference)
        self.prune_images()
        return round(time.monotonic() - started, 1)

    def discard_unpacked_layers(self, reference: str) -> int:
        """Delete the layer blobs of an unpacked image, keeping its manifest, config and snapshots: containers
        start from the snapshots, so the blobs only doubled the cache (the torch layer is 5.7 GB twice). This
        is the state the CRI's ``discard_unpacked_layers`` leaves after a pull. Returns bytes freed."""
        digest = self.image_digests()[reference]
        manifest = json.loads(self.ctr("content", "get", digest, timeout=60).stdout)
        freed = 0
        for layer in manifest.get("layers") or []:
            done = _run(
                ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "content", "rm", layer["digest"]],
                check=False,
                timeout=120,
            )
            freed += int(layer.get("size") or 0) if done.returncode == 0 else 0
        return freed

    def iter_logs(self) -> Iterator[tuple[str, str]]:
        for proc in self._processes:
            yield proc.name, proc.tail()

    # -------------------------------------------------------------------------------- start

    def open_network(self) -> None:
        """Take the machine's node lock, then add the node IP, the guard chain and the sysctls."""
        if self._started:
            raise NodeError("node already started")
        self._started = True
        if os.geteuid() != 0:
            raise NodeError("the real node needs root (network links, iptables, mounts, cgroups)")
        self._bin_dir = self._bin_dir or build_node_binaries(build=False)
        for tool in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip", "conntrack"):
            if shutil.which(tool) is None:
                raise NodeError(f"{tool} is missing: run {DEPS_SCRIPT}")
        LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NodeError(f"another real node runs on this machine ({LOCK_PATH} is locked)") from None
        self._work = Path(tempfile.mkdtemp(prefix="reasoning-node-", dir="/tmp"))
        self.log_dir.mkdir()
        atexit.register(self.stop)
        try:
            _remove_stale_guard()
            self._iptables_before = {t: _iptables_rules(t) for t in IPTABLES_TABLES}
            self._timed("network", self._setup_network)
        except BaseException:
            self.stop(keep_work_dir=True)
            raise

    def start(self, plane: ControlPlane) -> None:
        """Start containerd, the kubelet, kube-proxy, CoreDNS and the device plugin against ``plane``."""
        if not self._started:
            self.open_network()
        self._plane = plane
        try:
            self._start()
        except BaseException:
            self.stop(keep_work_dir=True)
            raise

    def _timed(self, what: str, fn: Callable[[], None]) -> None:
        t = time.monotonic()
        fn()
        self.timings[what] = round(time.monotonic() - t, 2)

    def _start(self) -> None:
        self._deadline = time.monotonic() + self._startup_timeout
        self._timed("containerd", self._start_containerd)
        self._timed("images", self._import_images)
        self._timed("kubelet", self._start_kubelet)
        self._timed("kube-proxy", self._start_kube_proxy)
        self._timed("coredns", self._start_coredns)
        self._timed("device-plugin", self._start_device_plugin)

    def _bin(self, name: str) -> str:
        assert self._bin_dir is not None
        return str(self._bin_dir / name)

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> _Process:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as out:
            out.write(f"$ {shlex.join(args)}\n".encode())
            out.flush()
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env={**os.environ, **(env or {})},
                process_group=0 if self._pgid is None else self._pgid,
                preexec_fn=_set_pdeathsig,
            )
        if self._pgid is None:
            self._pgid = popen.pid
        proc = _Process(name, popen, log)
        self._processes.append(proc)
        return proc

    def _wait(self, what: str, probe: Callable[[], tuple[bool, str]], log_of: str | None = None) -> None:
        last = ""
        while True:
            for proc in self._processes:
                code = proc.popen.poll()
                if code is not None:
                    raise NodeError(f"{proc.name} exited with code {code}; last lines of {proc.log}:\n{proc.tail()}")
            ok, last = probe()
            if ok:
                return
            if time.monotonic() > self._deadline:
                tail = "".join(f"\n--- {p.name}:\n{p.tail()}" for p in self._processes if p.name == log_of)
                raise NodeError(f"timed out waiting for {what} (last: {last}){tail}")
            time.sleep(0.2)

    def _setup_network(self) -> None:
        for key, value in SYSCTLS.items():
            path = Path("/proc/sys") / key
            self._sysctls_before[key] = path.read_text().strip()
            path.write_text(value)
        if _run(["ip", "link", "show", NODE_LINK], check=False).returncode == 0:
            _run(["ip", "link", "del", NODE_LINK])  # left by a killed run
        _run(["ip", "link", "add", NODE_LINK, "type", "bridge"])
        self._links.append(NODE_LINK)
        _run(["ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_LINK])
        _run(["ip", "link", "set", NODE_LINK, "up"])
        # The pods' bridge is created by the CNI bridge plugin; a stale one from a killed run would keep an
        # old address, so remove it first.
        if _run(["ip", "link", "show", POD_BRIDGE], check=False).returncode == 0:
            _run(["ip", "link", "del", POD_BRIDGE])
        self._links.append(POD_BRIDGE)
        ipt = ["iptables", "-w", "-t", "filter"]
        _run([*ipt, "-N", GUARD_CHAIN])
        for rule in (
            ["-i", "lo", "-j", "RETURN"],
            ["-i", POD_BRIDGE, "-j", "RETURN"],
            ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "RETURN"],
            ["-j", "DROP"],
        ):
            _run([*ipt, "-A", GUARD_CHAIN, *rule])
        _run([*ipt, "-I", "INPUT", "-d", f"{NODE_IP}/32", "-j", GUARD_CHAIN])
        _run([*ipt, "-I", "FORWARD", "-d", CLUSTER_CIDR, "-j", GUARD_CHAIN])

    # ------------------------------------------------------------------------ containerd

    def _start_containerd(self) -> None:
        work = self.work_dir
        run_dir, state = work / "run", work / "containerd-state"
        root = CONTAINERD_ROOT  # image content survives runs: big images import once
        for d in (run_dir, state, root, work / "cni" / "net.d", work / "cni" / "ipam", work / "opt"):
            d.mkdir(parents=True, exist_ok=True)
        cni = {
            "cniVersion": "1.0.0",
            "name": "reasoning-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": POD_BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # nothing from the pods leaves the machine
                    "hairpinMode": True,  # a pod reaching itself through its Service
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(work / "cni" / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (work / "cni" / "net.d" / "10-reasoning.conflist").write_text(json.dumps(cni, indent=2))
        cri = "io.containerd.grpc.v1.cri"
        config = f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{run_dir / "containerd.sock.ttrpc"}"
[debug]
  address = "{run_dir / "debug.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{work / "opt"}"
[plugins."{cri}"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  [plugins."{cri}".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{work / "cni" / "net.d"}"
  [plugins."{cri}".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."{cri}".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."{cri}".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which("runc")}"
        Root = "{work / "runc"}"
        SystemdCgroup = false
"""
        (work / "containerd.toml").write_text(config)
        self._spawn("containerd", ["containerd", "--config", str(work / "containerd.toml"), "--log-level", "info"])

        def up() -> tuple[bool, str]:
            if not self.containerd_socket.exists():
                return False, "no socket yet"
            proc = _run(["ctr", "--address", str(self.containerd_socket), "version"], check=False, timeout=10)
            return proc.returncode == 0, proc.stderr.strip()

        self._wait("containerd", up, "containerd")

    def _import_images(self) -> None:
        assert self._bin_dir is not None
        images = self.work_dir / "images"
        pause = write_oci_archive(
            static_binary_image(PAUSE_IMAGE, self._bin_dir / "pause", install_as="/pause", entrypoint=["/pause"]),
            images / "pause.tar",
        )
        busybox_bin = Path("/bin/busybox")
        applets = _run([str(busybox_bin), "--list"]).stdout.split()
        busybox = write_oci_archive(
            static_binary_image(BUSYBOX_IMAGE, busybox_bin, install_as="/bin/busybox", applets=applets),
            images / "busybox.tar",
        )
        imported = [ref for archive in (pause, busybox, *self._extra_images) for ref in self.import_image(archive)]
        # Images a killed run or a diagnosis left in the cached root, and versions re-imports superseded.
        self.prune_images(keep=imported)
        present = self.image_digests()
        for reference in self._import_records():
            if reference in present:
                self.discard_unpacked_layers(reference)

    # --------------------------------------------------------------------------- kubelet

    def _credential(self, file_name: str, cn: str, org: str | None) -> Path:
        pki = self.plane.ca_cert.parent
        crt, key = issue_client_certificate(pki, file_name, cn, org)
        return write_kubeconfig(
            self.work_dir / f"{file_name}.kubeconfig",
            server=self.plane.server,
            ca_cert=self.plane.ca_cert,
            user=cn,
            client_cert=crt,
            client_key=key,
        )

    def _start_kubelet(self) -> None:
        work = self.work_dir
        kubeconfig = self._credential("kubelet", f"system:node:{self.name}", "system:nodes")
        host_resolv = [ln for ln in Path("/etc/resolv.conf").read_text().splitlines() if ln.startswith("nameserver")]
        (work / "resolv.conf").write_text("\n".join(host_resolv) + "\n")
        self.kubelet_port, healthz = free_port(), free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this machine mounts cgroup v1 controllers (hybrid layout)
            "cgroupDriver": "cgroupfs",  # no systemd
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_IP,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "clusterDomain": CLUSTER_DOMAIN,
            "clusterDNS": [DNS_SERVICE_IP],
            "resolvConf": str(work / "resolv.conf"),
            "registerWithTaints": [GPU_TAINT],
            "podLogsDir": str(work / "pod-logs"),
            # Image GC at 85 % disk use would delete imported images (there is no registry to pull them
            # back from), and the default disk eviction thresholds would evict pods on a full CI disk.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # Absolute floors, not 1 % (2.5 GB of a 250 GB disk): a shared CI disk dips that low while a big image
            # is imported, and the DiskPressure taint then kept every pod off the node for the default 5 min.
            "evictionHard": {"memory.available": "50Mi", "nodefs.available": "256Mi", "imagefs.available": "256Mi"},
            "evictionPressureTransitionPeriod": "5s",
            "serializeImagePulls": False,
            "nodeStatusUpdateFrequency": "2s",
            "syncFrequency": "10s",
            "fileCheckFrequency": "5s",
            "maxPods": 50,
        }
        (work / "kubelet.yaml").write_text(json.dumps(config, indent=2))
        labels = {
            GPU_PRODUCT_LABEL: self.gpu_product,
            GPU_PRESENT_LABEL: "true",
            "type": "real",
        }
        self._spawn(
            "kubelet",
            [
                self._bin("kubelet"),
                f"--config={work / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={work / 'kubelet'}",
                f"--cert-dir={work / 'kubelet-pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={NODE_IP}",
                f"--node-labels={','.join(f'{k}={v}' for k, v in labels.items())}",
                "--v=1",
            ],
        )
        core: Any = k8s_client.CoreV1Api(self._admin())

        def ready() -> tuple[bool, str]:
            try:
                node = core.read_node(self.name)
            except k8s_client.ApiException as exc:
                return False, f"{exc.status} {exc.reason}"
            conditions = {c.type: c.status for c in node.status.conditions or []}
            not_ready_taint = any(t.key.startswith("node.kubernetes.io/") for t in node.spec.taints or [])
            return conditions.get("Ready") == "True" and not not_ready_taint, f"conditions {conditions}"

        self._wait(f"node {self.name} Ready", ready, "kubelet")

    def _admin(self) -> Any:
        if self._admin_client is None:
            self._admin_client = self.plane.api_client()
        return self._admin_client

    # ------------------------------------------------------------------------ kube-proxy

    def _start_kube_proxy(self) -> None:
        kubeconfig = self._credential("kube-proxy", "system:kube-proxy", None)
        self._proxy_healthz = free_port()
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables",
            "hostnameOverride": self.name,
            "bindAddress": NODE_IP,
            "healthzBindAddress": f"127.0.0.1:{self._proxy_healthz}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "clusterCIDR": CLUSTER_CIDR,
            "nodePortAddresses": [f"{NODE_IP}/32"],
            # Leave the host's conntrack sysctls alone (setting them needs more than this machine allows).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
        }
        path = self.work_dir / "kube-proxy.yaml"
        path.write_text(json.dumps(config, indent=2))
        self._spawn("kube-proxy", [self._bin("kube-proxy"), f"--config={path}", "--v=1"])

        def healthy() -> tuple[bool, str]:
            rules = _run(["iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES"], check=False)
            return rules.returncode == 0 and "default/kubernetes" in rules.stdout, rules.stderr.strip()[:200]

        self._wait("kube-proxy's rules for default/kubernetes", healthy, "kube-proxy")

    # --------------------------------------------------------------------------- CoreDNS

    def _start_coredns(self) -> None:
        core: Any = k8s_client.CoreV1Api(self._admin())
        discovery: Any = k8s_client.DiscoveryV1Api(self._admin())
        ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
        core.create_namespaced_service(
            "kube-system",
            {
                "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns"}},
                "spec": {
                    "clusterIP": DNS_SERVICE_IP,
                    "ports": [{"name": n, "port": 53, "protocol": p, "targetPort": 53} for n, p in ports],
                },
            },
        )
        # No selector: CoreDNS is a host process, so its one endpoint is the node IP (as for the apiserver).
        discovery.create_namespaced_endpoint_slice(
            "kube-system",
            {
                "metadata": {
                    "name": "kube-dns-node",
                    "labels": {
                        "kubernetes.io/service-name": "kube-dns",
                        "endpointslice.kubernetes.io/managed-by": "reasoning-test-node",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}, "nodeName": self.name}],
                "ports": [{"name": n, "port": 53, "protocol": p} for n, p in ports],
            },
        )
        health, ready = free_port(), free_port()
        corefile = f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {self.plane.kubeconfig} admin
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . {self.work_dir / "resolv.conf"}
    cache 5
}}
"""
        (self.work_dir / "Corefile").write_text(corefile)
        self._spawn("coredns", [self._bin("coredns"), "-conf", str(self.work_dir / "Corefile")])

        def is_ready() -> tuple[bool, str]:
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{ready}/ready", timeout=2) as resp:
                    return resp.status == 200, str(resp.status)
            except OSError as exc:
                return False, str(exc)

        self._wait("CoreDNS ready", is_ready, "coredns")

    # ---------------------------------------------------------------------- device plugin

    def _start_device_plugin(self) -> None:
        self._spawn(
            "device-plugin",
            [sys.executable, "-m", "tests.support.deviceplugin", "--count", str(self.gpu_count)],
            env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        core: Any = k8s_client.CoreV1Api(self._admin())

        def advertised() -> tuple[bool, str]:
            allocatable = core.read_node(self.name).status.allocatable or {}
            return allocatable.get(GPU_RESOURCE) == str(self.gpu_count), f"allocatable {allocatable}"

        self._wait(f"{GPU_RESOURCE} x{self.gpu_count} in the node's allocatable", advertised, "device-plugin")

    # ------------------------------------------------------------------------------- stop

    def stop(self, *, keep_work_dir: bool | None = None) -> None:
        """Tear everything down; every step runs even when an earlier one fails."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        errors: list[str] = []

        def step(what: str, fn: Callable[[], None]) -> None:
            try:
                fn()
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        if self._work is not None:
            if self._plane is not None:
                step("delete pods", self._delete_pods)
            step("kill containers", self._kill_containers)
            step("stop processes", self._stop_processes)
            step("kube-proxy --cleanup", self._kube_proxy_cleanup)
            step("unmount", self._unmount)
            step("cgroups", self._remove_cgroups)
        step("device-plugin dir", self._clean_device_plugin_dir)
        step("links", self._remove_links)
        step("iptables", self._restore_iptables)
        step("sysctls", self._restore_sysctls)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        keep = self._keep if keep_work_dir is None else keep_work_dir
        if self._work is not None and not keep:
            shutil.rmtree(self._work, ignore_errors=True)
        if errors:
            print(f"[node] teardown problems: {errors}", file=sys.stderr)

    def _delete_pods(self) -> None:
        core: Any = k8s_client.CoreV1Api(self._admin())
        pods = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.name}").items
        for pod in pods:
            with contextlib.suppress(k8s_client.ApiException):
                core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the kubelet stops the sandboxes (CNI DEL) of deleted pods
            if not self._running_tasks():
                break
            time.sleep(0.5)

    def _running_tasks(self) -> list[str]:
        out = self.ctr("tasks", "ls", timeout=20).stdout.splitlines()[1:]
        return [line.split()[0] for line in out if line.split() and line.split()[-1] == "RUNNING"]

    def _kill_containers(self) -> None:
        if not self.containerd_socket.exists():
            return
        tasks = self.ctr("tasks", "ls", "-q", timeout=20).stdout.split()
        for task in tasks:
            _run(
                [
                    "ctr",
                    "--address",
                    str(self.containerd_socket),
                    "-n",
                    "k8s.io",
                    "tasks",
                    "kill",
                    "-s",
                    "SIGKILL",
                    task,
                ],
                check=False,
                timeout=20,
            )
        deadline = time.monotonic() + 10
        while self._running_tasks() and time.monotonic() < deadline:
            time.sleep(0.3)
        for task in tasks:
            _run(
                ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "tasks", "delete", "-f", task],
                check=False,
                timeout=20,
            )
        for container in self.ctr("containers", "ls", "-q", timeout=20).stdout.split():
            _run(
                ["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", "containers", "rm", container],
                check=False,
                timeout=20,
            )

    def _stop_processes(self) -> None:
        if self._admin_client is not None:
            with contextlib.suppress(Exception):
                self._admin_client.close()
        live = [p for p in self._processes if p.popen.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in live:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
        for proc in self._processes:
            proc.popen.wait()
        # containerd's shims daemonize out of our process group; a killed containerd leaves them behind.
        state = str(self.work_dir / "containerd-state")
        for pid_dir in Path("/proc").iterdir():
            if not pid_dir.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (pid_dir / "cmdline").read_bytes().split(b"\0")
                if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and state.encode() in b" ".join(cmdline):
                    os.kill(int(pid_dir.name), signal.SIGKILL)

    def _kube_proxy_cleanup(self) -> None:
        if self._bin_dir is not None and Path(self._bin("kube-proxy")).exists():
            _run([self._bin("kube-proxy"), "--cleanup"], check=False, timeout=60)

    def _unmount(self) -> None:
        prefixes = (str(self.work_dir) + "/", str(CONTAINERD_ROOT) + "/")
        mounts: list[str] = []
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefixes):
                mounts.append(point)
        for point in sorted(set(mounts), key=len, reverse=True):
            _run(["umount", "-l", point], check=False)

    def _remove_cgroups(self) -> None:
        root = Path("/sys/fs/cgroup")
        for hierarchy in [root, *(p for p in root.iterdir() if p.is_dir())]:
            top = hierarchy / "kubepods"
            if not top.is_dir():
                continue
            for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
                with contextlib.suppress(OSError):
                    Path(dirpath).rmdir()

    def _clean_device_plugin_dir(self) -> None:
        """The kubelet's registration socket and checkpoint live at a fixed path outside its root dir."""
        for name in ("kubelet.sock", "kubelet_internal_checkpoint"):
            (DEVICE_PLUGIN_DIR / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            DEVICE_PLUGIN_DIR.rmdir()  # only when empty

    def _remove_links(self) -> None:
        for link in self._links:
            if _run(["ip", "link", "show", link], check=False).returncode == 0:
                _run(["ip", "link", "del", link], check=False)

    def _restore_iptables(self) -> None:
        """Delete the KUBE-*/REASONING-* rules and chains that were not there before the node started."""
        for table in IPTABLES_TABLES:
            before = set(self._iptables_before.get(table, []))
            now = _iptables_rules(table)
            added = [r for r in now if r not in before and _owned(r)]
            for rule in added:
                if rule.startswith("-A "):
                    _run(["iptables", "-w", "-t", table, "-D", *shlex.split(rule)[1:]], check=False)
            chains = [r.split()[1] for r in added if r.startswith("-N ")]
            for chain in chains:
                _run(["iptables", "-w", "-t", table, "-F", chain], check=False)
            for chain in chains:
                _run(["iptables", "-w", "-t", table, "-X", chain], check=False)

    def _restore_sysctls(self) -> None:
        for key, value in self._sysctls_before.items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / key).write_text(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Start the control plane and the real node in the foreground until Ctrl-C; print how to reach them."""
    import argparse

    from tests.support.controlplane import build_binaries

    parser = argparse.ArgumentParser(prog="python -m tests.support.node", description=main.__doc__)
    parser.add_argument("--image", action="append", type=Path, default=[], help="an image archive to import")
    parser.add_argument("--gpus", type=int, default=1)
    args = parser.parse_args(argv)
    started = time.monotonic()
    plane_bins, node_bins = build_binaries(), build_node_binaries()
    stop_requested = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    with node_cluster(plane_bins, node_bins, gpu_count=args.gpus, images=args.image) as (plane, node):
        print(f"# control plane + real node up in {time.monotonic() - started:.1f}s ({node.timings})", flush=True)
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        print(f"# logs: {plane.log_dir} {node.log_dir}; kubectl: {plane.bin_dir / 'kubectl'}", flush=True)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop_requested:
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
