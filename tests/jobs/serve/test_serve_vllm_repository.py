"""The production (vLLM) backend: the generated Triton model repository and the command line. Serving itself
needs a GPU and the tritonserver vLLM image, which this machine lacks: unverified here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reasoning_jobs.serve.vllm_backend import (
    LORA_SEPARATOR,
    OPENAI_FRONTEND,
    adapter_rank,
    frontend_command,
    openai_model_names,
    write_model_repository,
)
from reasoning_operator.api import ModelSpec, ServingSpec, ServingStageConfig


def adapter(tmp_path: Path, rank: int) -> Path:
    path = tmp_path / "adapter"
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": rank, "peft_type": "LORA"}))
    return path


def stage(adapter_path: Path | None, **serving: object) -> ServingStageConfig:
    return ServingStageConfig(
        model=ModelSpec(name="meta-llama/Llama-3.1-8B-Instruct"),
        serving=ServingSpec(backend="vllm", **serving),
        adapter_path=str(adapter_path) if adapter_path else None,
    )


def test_repository_serves_base_and_adapter_from_one_engine(tmp_path: Path) -> None:
    config = stage(adapter(tmp_path, 48), max_model_len=8192, gpu_memory_utilization=0.85, gpus=2)
    repo = write_model_repository(config, tmp_path / "repo")
    assert repo.model_dir == tmp_path / "repo" / "base"
    engine = json.loads(repo.model_json.read_text())
    assert engine == {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "max_model_len": 8192,
        "gpu_memory_utilization": 0.85,
        "tensor_parallel_size": 2,
        "dtype": "bfloat16",
        "enable_prefix_caching": True,
        "enable_lora": True,
        "max_lora_rank": 64,
        "max_loras": 1,
    }
    assert repo.multi_lora_json is not None
    assert json.loads(repo.multi_lora_json.read_text()) == {"trained": str(tmp_path / "adapter")}
    pbtxt = repo.config_pbtxt.read_text()
    assert 'name: "base"' in pbtxt and 'backend: "vllm"' in pbtxt and "decoupled: true" in pbtxt


def test_without_adapter_no_lora(tmp_path: Path) -> None:
    repo = write_model_repository(stage(None), tmp_path / "repo")
    assert "enable_lora" not in json.loads(repo.model_json.read_text())
    assert repo.multi_lora_json is None and not (repo.model_dir / "1" / "multi_lora.json").exists()
    assert "--lora-separator" not in frontend_command(stage(None), repo.root)


@pytest.mark.parametrize(("rank", "expected"), [(1, 8), (8, 8), (16, 16), (33, 64), (64, 64), (300, 320)])
def test_lora_rank_rounds_up_to_a_vllm_rank(tmp_path: Path, rank: int, expected: int) -> None:
    assert adapter_rank(str(adapter(tmp_path, rank))) == expected


def test_lora_rank_too_large(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exceeds"):
        adapter_rank(str(adapter(tmp_path, 1024)))


def test_frontend_command_line(tmp_path: Path) -> None:
    config = stage(adapter(tmp_path, 64))
    command = frontend_command(config, tmp_path / "repo")
    assert command[:2] == ["python3", OPENAI_FRONTEND]

    def flag(name: str) -> str:
        return command[command.index(name) + 1]

    assert flag("--model-repository") == str(tmp_path / "repo")
    assert flag("--tokenizer") == "meta-llama/Llama-3.1-8B-Instruct"
    assert flag("--openai-port") == "9000"
    assert flag("--kserve-http-port") == "8000" and flag("--kserve-grpc-port") == "8001"
    assert "--enable-kserve-frontends" in command
    assert command[command.index("--lora-separator") + 1] == LORA_SEPARATOR
    assert openai_model_names(config) == {"base": "base", "trained": f"base{LORA_SEPARATOR}trained"}


def test_cli_dry_run_writes_repository(tmp_path: Path) -> None:
    config = stage(adapter(tmp_path, 16))
    config_file = tmp_path / "serving.json"
    config_file.write_text(json.dumps(config.to_wire()))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "reasoning_operator.cli",
            "serve",
            "--config",
            str(config_file),
            "--repository",
            str(tmp_path / "repo"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert OPENAI_FRONTEND in out.stdout and "--lora-separator" in out.stdout
    assert json.loads((tmp_path / "repo" / "base" / "1" / "model.json").read_text())["max_lora_rank"] == 16
