"""`make images`, `make images-push`, `make images-save`: the project's five images, built with podman.

The table below is the one place that says which extras each image carries and whether it sits on the shared
torch layer; the names and tags come from the API (`reasoning_operator.api.default_image`), so what is built
here is what `ImagesSpec` and the chart default to (tests/images/test_image_refs.py checks all three).

Each build mounts, into RUN steps only, the host's uv binary, its cache (~/.cache/uv: a rebuild downloads
nothing it has seen) and the host's CA bundle (these machines reach PyPI through a TLS-intercepting gateway);
none of them lands in an image. Run with scripts/images/engine.sh's environment (`make images` does).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "operator"))

from reasoning_operator.api import default_image  # noqa: E402

BUILD_DIR = REPO / "build" / "images"
CACHE = Path(os.environ.get("REASONING_CACHE", Path.home() / ".cache" / "reasoning-operator"))
ARCHIVES = CACHE / "images" / "archives"
CA_CANDIDATES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


@dataclass(frozen=True)
class Image:
    name: str
    extras: tuple[str, ...]
    torch: bool  # FROM the shared torch layer (curation, training and serving all need torch)

    @property
    def ref(self) -> str:
        return default_image(self.name)

    @property
    def dockerfile(self) -> Path:
        return REPO / "images" / self.name / "Dockerfile"


#: THE table: image -> project extras. Serving carries both backends: `pytriton` (serve) and the default `vllm`
#: (serve-vllm: vLLM's CUDA wheel inside PyTriton's Triton), both on the torch layer's torch (the lock's one torch).
IMAGES: tuple[Image, ...] = (
    Image("operator", ("operator",), torch=False),
    Image("curation", ("curate",), torch=True),
    Image("training", ("train", "train-gpu"), torch=True),
    Image("serving", ("serve", "serve-vllm"), torch=True),
    Image("evaluation", ("evaluate",), torch=False),
)
BY_NAME = {image.name: image for image in IMAGES}


def _podman() -> str:
    podman = shutil.which("podman")
    if podman is None:
        sys.exit("error: podman not found: run `make images` (scripts/images/engine.sh installs it on Debian)")
    return podman


def _uv_binary() -> Path:
    """The host's uv as a real executable (a pyenv shim is a shell script that cannot run in the image)."""
    candidates = [os.environ.get("UV_BIN"), shutil.which("uv")]
    if shutil.which("pyenv"):
        found = subprocess.run(["pyenv", "which", "uv"], capture_output=True, text=True, check=False)
        candidates.append(found.stdout.strip() or None)
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and Path(candidate).read_bytes()[:4] == b"\x7fELF":
            return Path(candidate).resolve()
    sys.exit("error: no uv binary found (scripts/setup.sh installs uv; or set UV_BIN)")


def _uv_cache() -> Path:
    found = subprocess.run([str(_uv_binary()), "cache", "dir"], capture_output=True, text=True, check=True)
    cache = Path(found.stdout.strip())
    cache.mkdir(parents=True, exist_ok=True)  # a fresh machine may have none yet; podman needs the source
    return cache


def _ca_bundle() -> Path | None:
    for candidate in (os.environ.get("SSL_CERT_FILE"), *CA_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def torch_constraints(lock: Path = REPO / "uv.lock") -> str:
    """torch and its whole dependency closure as `uv export` pins them (with their markers), nothing else.

    Only this closure goes into the torch layer's build context, so a lock change elsewhere keeps the layer."""
    packages: dict[str, list[str]] = {}
    for package in tomllib.loads(lock.read_text())["package"]:
        deps = list(package.get("dependencies", []))
        for extra_deps in package.get("optional-dependencies", {}).values():
            deps.extend(extra_deps)
        packages.setdefault(package["name"], []).extend(d["name"] for d in deps)  # extras: cuda-toolkit[cublas]
    closure: set[str] = set()
    todo = ["torch"]
    while todo:
        name = todo.pop()
        if name not in closure and name in packages:
            closure.add(name)
            todo.extend(packages[name])
    exported = subprocess.run(
        [str(_uv_binary()), "export", "--frozen", "--no-emit-project", "--no-hashes", "--no-header",
         "--extra", "train", "--project", str(lock.parent)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [line for line in exported.splitlines() if line.split("==")[0].strip() in closure]
    return "".join(f"{line}\n" for line in sorted(lines))


def torch_ref(constraints: str) -> str:
    return f"localhost/reasoning-operator/torch:{hashlib.sha256(constraints.encode()).hexdigest()[:12]}"


def _run(argv: Sequence[str]) -> None:
    print("+ " + " ".join(argv), flush=True)
    subprocess.run(argv, check=True)


def _mounts() -> list[str]:
    mounts = ["--volume", f"{_uv_binary()}:/usr/local/bin/uv:ro", "--volume", f"{_uv_cache()}:/root/.cache/uv"]
    ca = _ca_bundle()
    if ca is not None:
        mounts += ["--volume", f"{ca}:/run/host-ca.crt:ro"]
    return mounts


def _build(dockerfile: Path, tag: str, build_args: dict[str, str]) -> float:
    started = time.monotonic()
    argv = [_podman(), "build", "--pull=never", "--layers", "--file", str(dockerfile), "--tag", tag, *_mounts()]
    argv += shlex.split(os.environ.get("IMAGES_BUILD_FLAGS", ""))  # e.g. --no-cache, --network=none
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    try:
        _run([*argv, str(REPO)])
    except subprocess.CalledProcessError:
        sys.exit(f"error: building {tag} failed (above: uv names any package it could not fetch)")
    return time.monotonic() - started


def base_ref() -> str:
    out = subprocess.run(["bash", str(REPO / "scripts" / "images" / "base.sh")], capture_output=False, check=False,
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    if out.returncode != 0:
        sys.exit(out.returncode)
    return out.stdout.strip().splitlines()[-1]


def build(names: Sequence[str]) -> dict[str, float]:
    """Build the named images (all when empty); returns seconds per image, base and torch layer included."""
    images = [BY_NAME[n] for n in names] if names else list(IMAGES)
    timings: dict[str, float] = {}
    started = time.monotonic()
    base = base_ref()
    timings["base"] = time.monotonic() - started
    torch = ""
    if any(image.torch for image in images):
        constraints = torch_constraints()
        BUILD_DIR.mkdir(parents=True, exist_ok=True)
        (BUILD_DIR / "torch-constraints.txt").write_text(constraints)
        torch = torch_ref(constraints)
        timings["torch"] = _build(REPO / "images" / "torch" / "Dockerfile", torch, {"BASE": base})
    for image in images:
        extras = " ".join(f"--extra {extra}" for extra in image.extras)
        timings[image.name] = _build(image.dockerfile, image.ref, {"BASE": torch if image.torch else base,
                                                                  "EXTRAS": extras})  # fmt: skip
    for name, seconds in timings.items():
        print(f"built {name:<10} in {seconds:6.1f} s", flush=True)
    return timings


def retag(ref: str, registry: str) -> str:
    """ghcr.io/reasoning-operator/serving:0.1.0 in registry reg:5000/team -> reg:5000/team/serving:0.1.0"""
    return f"{registry.rstrip('/')}/{ref.rsplit('/', 1)[1]}"


def push(registry: str, names: Sequence[str], tls_verify: bool) -> None:
    for image in [BY_NAME[n] for n in names] if names else IMAGES:
        target = retag(image.ref, registry) if registry else image.ref
        if target != image.ref:
            _run([_podman(), "tag", image.ref, target])
        _run([_podman(), "push", f"--tls-verify={str(tls_verify).lower()}", target])


def archive_path(image: Image, directory: Path = ARCHIVES) -> Path:
    return directory / f"{image.ref.rsplit('/', 1)[1].replace(':', '-')}.tar"


def save(directory: Path, names: Sequence[str], combined: bool = False) -> None:
    """Uncompressed docker archives (gzip costs minutes on 2 cores), one per image, named by its ref so
    `ctr -n k8s.io images import FILE` recreates the same ref in containerd. `combined`: one archive
    (images.tar) holding them all, the shared torch layers once (~8 GB instead of ~20 for all five)."""
    directory.mkdir(parents=True, exist_ok=True)
    images = [BY_NAME[n] for n in names] if names else list(IMAGES)
    if combined:
        target = directory / "images.tar"
        tmp = target.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        refs = [image.ref for image in images]
        _run([_podman(), "save", "--multi-image-archive", "--format", "docker-archive", "--output", str(tmp), *refs])
        tmp.replace(target)
        print(f"{target}  {target.stat().st_size / 2**20:.0f} MiB  {' '.join(refs)}", flush=True)
        return
    for image in images:
        target = archive_path(image, directory)
        tmp = target.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        _run([_podman(), "save", "--format", "docker-archive", "--output", str(tmp), image.ref])
        tmp.replace(target)
        print(f"{target}  {target.stat().st_size / 2**20:.0f} MiB  {image.ref}", flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build").add_argument("images", nargs="*", choices=[*BY_NAME, []])
    p = sub.add_parser("push")
    p.add_argument("--registry", default="", help="push to REGISTRY/<name>:<version> instead of the default refs")
    p.add_argument("--tls-verify", default="true", choices=["true", "false"])
    p.add_argument("images", nargs="*", choices=[*BY_NAME, []])
    s = sub.add_parser("save")
    s.add_argument("--dir", type=Path, default=ARCHIVES)
    s.add_argument("--combined", action="store_true", help="one archive, images.tar, shared layers once")
    s.add_argument("images", nargs="*", choices=[*BY_NAME, []])
    sub.add_parser("refs")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.images)
    elif args.command == "push":
        push(args.registry, args.images, args.tls_verify == "true")
    elif args.command == "save":
        save(args.dir, args.images, args.combined)
    else:
        for image in IMAGES:
            print(f"{image.name} {image.ref} {archive_path(image)}")


if __name__ == "__main__":
    main()
