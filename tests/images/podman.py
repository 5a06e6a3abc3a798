"""Run an image the way the kubelet would run the operator's pod spec: a pod spec from the builders (or the
chart) becomes `podman run` flags, field by field, so the tests hold no second copy of the security context.

Mapping (Kubernetes -> podman): runAsUser/runAsGroup -> --user; fsGroup -> ownership of the volumes;
readOnlyRootFilesystem -> --read-only without podman's extra tmpfs mounts; allowPrivilegeEscalation: false
-> no-new-privileges; capabilities.drop ALL -> --cap-drop ALL; seccomp RuntimeDefault -> the engine's default
profile (no flag); emptyDir -> tmpfs (medium Memory on /dev/shm -> --shm-size); PVC and ConfigMap -> bind
mounts of host directories; env values -> --env; command/args -> --entrypoint and arguments; resources.limits
-> --cpus/--memory (cpus capped at this machine's cores); terminationMessagePath -> a host file mounted there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
_SIZE = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}


def engine_env() -> dict[str, str]:
    """The environment the project's podman calls use (scripts/images/engine.sh: CONTAINERS_CONF)."""
    out = subprocess.run(["bash", str(REPO / "scripts/images/engine.sh")], capture_output=True, text=True, check=True)
    env = dict(os.environ)
    for line in out.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value
    return env


def podman(
    *args: str, env: dict[str, str], timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} -> {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result


def _bytes(quantity: str) -> int:
    for suffix, factor in _SIZE.items():
        if quantity.endswith(suffix):
            return int(float(quantity.removesuffix(suffix)) * factor)
    return int(quantity)


def _cpus(quantity: str) -> float:
    wanted = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return min(wanted, float(os.cpu_count() or 1))


@dataclass
class PodRun:
    """One container of a pod spec, with host directories standing in for its PVC and ConfigMap."""

    pod: dict[str, Any]
    container: dict[str, Any]
    volumes: dict[str, Path] = field(default_factory=dict)  # volume name -> host directory (PVC, ConfigMap)
    termination_log: Path | None = None

    def security_flags(self) -> list[str]:
        pod_sc, sc = self.pod.get("securityContext", {}), self.container.get("securityContext", {})
        merged = {**pod_sc, **sc}
        flags = ["--user", f"{merged['runAsUser']}:{merged.get('runAsGroup', merged['runAsUser'])}"]
        if "fsGroup" in pod_sc:
            flags += ["--group-add", str(pod_sc["fsGroup"])]
        if sc.get("readOnlyRootFilesystem"):
            flags += ["--read-only", "--read-only-tmpfs=false"]
        if sc.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        drop = sc.get("capabilities", {}).get("drop", [])
        flags += [f"--cap-drop={cap}" for cap in drop]
        assert merged["seccompProfile"]["type"] == "RuntimeDefault"  # podman's default profile: no flag needed
        assert "add" not in sc.get("capabilities", {})
        return flags

    def volume_flags(self) -> list[str]:
        specs = {v["name"]: v for v in self.pod.get("volumes", [])}
        fs_group = self.pod.get("securityContext", {}).get("fsGroup")
        flags: list[str] = []
        for mount in self.container.get("volumeMounts", []):
            volume = specs[mount["name"]]
            path = mount["mountPath"]
            if "emptyDir" in volume:
                limit = volume["emptyDir"].get("sizeLimit")
                if path == "/dev/shm":
                    flags += ["--shm-size", str(_bytes(limit or "64Mi"))]
                else:
                    flags += ["--tmpfs", f"{path}:rw,exec,mode=1777" + (f",size={_bytes(limit)}" if limit else "")]
                continue
            host = self.volumes[mount["name"]]
            if "configMap" in volume:  # the kubelet writes ConfigMap keys with defaultMode (0644)
                host.chmod(0o755)
                for item in host.iterdir():
                    item.chmod(int(volume["configMap"].get("defaultMode", 0o644)))
            if fs_group is not None and not mount.get("readOnly"):
                for item in [host, *host.rglob("*")]:
                    os.chown(item, -1 if os.geteuid() else int(fs_group), int(fs_group))
                    item.chmod(item.stat().st_mode | 0o060 | (0o010 if item.is_dir() else 0))
            flags += ["--volume", f"{host}:{path}:{'ro' if mount.get('readOnly') else 'rw'}"]
        if self.termination_log is not None:
            self.termination_log.write_text("")
            self.termination_log.chmod(0o666)  # the kubelet's file is writable by the container's user
            flags += ["--volume", f"{self.termination_log}:{self.container['terminationMessagePath']}:rw"]
        return flags

    def env_flags(self, extra: dict[str, str] | None = None) -> list[str]:
        values = {e["name"]: e["value"] for e in self.container.get("env", []) if "value" in e}
        return [f"--env={k}={v}" for k, v in {**values, **(extra or {})}.items()]

    def resource_flags(self) -> list[str]:
        limits = self.container.get("resources", {}).get("limits", {})
        flags = []
        if "cpu" in limits:
            flags += ["--cpus", f"{_cpus(limits['cpu']):g}"]
        if "memory" in limits:
            flags += ["--memory", str(_bytes(limits["memory"]))]
        return flags

    def argv(
        self,
        *,
        name: str,
        network: str = "none",
        detach: bool = False,
        args: Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        command: Sequence[str] | None = None,
    ) -> list[str]:
        """`podman run` arguments; args/command replace the container's (as a pod's args/command would)."""
        command = self.container.get("command") if command is None else command
        argv = ["run", "--name", name, "--network", network, "--pull=never"]
        argv += ["--detach"] if detach else ["--rm"]
        argv += self.security_flags() + self.volume_flags() + self.env_flags(env) + self.resource_flags()
        if command:
            argv += ["--entrypoint", json.dumps(command)]
        argv.append(self.container["image"])
        argv += list(self.container.get("args", []) if args is None else args)
        return argv


def image_user(image: str, env: dict[str, str]) -> str:
    out = podman("image", "inspect", "--format", "{{.Config.User}}", image, env=env)
    return out.stdout.strip()


def image_size(image: str, env: dict[str, str]) -> int:
    return int(podman("image", "inspect", "--format", "{{.Size}}", image, env=env).stdout.strip())


def have_podman() -> bool:
    return shutil.which("podman") is not None
