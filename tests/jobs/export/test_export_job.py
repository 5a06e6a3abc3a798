"""`reasoning export` end to end on the CPU: a tiny Llama trained by the real training job (LoRA), exported
to the run's volume (merged safetensors + tokenizer + chat template + model card, and the adapter), to an
S3 bucket on a real S3-API server (moto's), and the Hugging Face destination's error paths (no hub here:
its upload is only reached against a closed port). No secret value ever reaches the output or the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from tests.jobs.train.conftest import write_dataset
from tests.support.mlflow_server import free_port

from reasoning_operator.api import (
    Accuracy,
    CurationResult,
    EvaluationResult,
    ExportSpec,
    ExportStageConfig,
    ModelSpec,
    TrainingSpec,
)

ROOT = Path(__file__).resolve().parents[3]
SECRET = "s3cr3t-VALUE-never-printed"
TRAINING = {"method": "lora", "maxSteps": 2, "globalBatchSize": 4, "microBatchSize": 2, "maxSeqLength": 256,
            "checkpointInterval": 2, "learningRate": 5e-3, "gradientCheckpointing": False, "precision": "fp32",
            "lora": {"rank": 8, "alpha": 16}}  # fmt: skip


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HF_TOKEN"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), str(ROOT / "jobs")])
    return {**env, **(extra or {})}


def reasoning(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reasoning_operator.cli", *args]
    return subprocess.run(command, env=_env(env), capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory as the stages leave it: curated/ and eval/ summaries, train/ from the real job."""
    from reasoning_jobs.train.tiny_model import build_tiny_llama

    root = tmp_path_factory.mktemp("export")
    model = build_tiny_llama(root / "base", hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                             intermediate_size=128)  # fmt: skip
    run = root / "demo"
    (run / "curated").mkdir(parents=True)
    data = write_dataset(run / "curated" / "training.jsonl", 16)
    curated = CurationResult(samples_read=20, samples_written=16, dropped={"too_long": 4}, reasoning_on=8,
                             reasoning_off=8)  # fmt: skip
    (run / "curated" / "summary.json").write_text(json.dumps(curated.to_wire()))
    (run / "eval").mkdir()
    scores = EvaluationResult(accuracies=[Accuracy(benchmark="mmlu", mode="on", model="trained", accuracy=0.625,
                                                   ci_low=0.3, ci_high=0.86, n=8)])  # fmt: skip
    (run / "eval" / "summary.json").write_text(json.dumps(scores.to_wire()))
    done = reasoning("train", "--model", str(model), "--data", str(data), "--output-dir", str(run / "train"),
                     "--method", "lora", "--max-steps", "2", "--global-batch-size", "4", "--micro-batch-size", "2",
                     "--max-seq-length", "256", "--checkpoint-interval", "2", "--lora-rank", "8", "--lora-alpha",
                     "16", "--no-gradient-checkpointing", "--precision", "fp32", "--no-progress")  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return run


def export_config(run: Path, out: str, **export: Any) -> ExportStageConfig:
    base = run.parent / "base"
    return ExportStageConfig(
        model=ModelSpec(name=str(base)),
        training=TrainingSpec.model_validate(TRAINING),
        export=ExportSpec.model_validate(export),
        trained_dir=str(run / "train"),
        curated_dir=str(run / "curated"),
        evaluation_dir=str(run / "eval"),
        output_dir=out,
    )


def export(config: ExportStageConfig, tmp: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp / "export.yaml"
    path.write_text(json.dumps(config.to_wire()))
    return reasoning("export", "--config", str(path), env={"REASONING_RUN": "demo", **(env or {})})


def test_volume_export_is_a_loadable_merged_model_and_the_adapter(run_dir: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "export"
    done = export(export_config(run_dir, str(out), merged=True, adapter=True), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["destination"] == str(out)
    assert summary["mergedPath"] == str(out / "merged") and summary["adapterPath"] == str(out / "adapter")
    merged, adapter = out / "merged", out / "adapter"
    assert (merged / "model.safetensors").is_file() and not list(merged.glob("*.bin"))
    assert summary["files"] == sum(1 for d in (merged, adapter) for p in d.rglob("*") if p.is_file())
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert tokenizer.chat_template  # the chat template travels with the tokenizer
    assert "<|" in tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)

    # The merged weights compute what base + adapter computes.
    ids = torch.tensor([[0, 2, 88, 411, 3, 204, 204, 73, 422]])
    with torch.no_grad():
        tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run_dir.parent / "base"), adapter)
        want = tuned(input_ids=ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged)(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    card = (merged / "README.md").read_text()
    assert card.startswith("---\nbase_model: ") and "# demo" in card
    assert "maxSteps: 2" in card and "learningRate: 0.005" in card  # the recipe
    assert "samples read: 20, written: 16" in card and "too_long 4" in card  # the data
    assert "| mmlu | trained | on | 8 | 0.625 | [0.300, 0.860] |" in card  # the scores
    assert "library_name: peft" in (adapter / "README.md").read_text()


def test_adapter_only_and_a_full_fine_tune_has_no_adapter(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "adapter-only"
    done = export(export_config(run_dir, str(out), merged=False, adapter=True), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "merged").exists()
    full = export_config(run_dir, str(tmp_path / "full"), merged=False, adapter=True)
    full = full.model_copy(update={"training": TrainingSpec.model_validate({**TRAINING, "method": "full"})})
    refused = export(full, tmp_path)
    assert refused.returncode == 2 and "needs spec.training.method lora" in refused.stderr


def test_spec_rules() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs merged or adapter"):
        ExportSpec(merged=False, adapter=False)
    with pytest.raises(ValidationError, match=r"needs spec\.export\.credentialsSecret"):
        ExportSpec(destination="s3://bucket/x")
    with pytest.raises(ValidationError):
        ExportSpec(destination="relative/path")
    assert ExportSpec(destination="hf://org/name", credentials_secret="hub").remote()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3-API server on loopback (the one the curation tests use): s3fs and botocore are real."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_s3_destination(run_dir: Path, tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint, aws_access_key_id="AKIDEXPORT",
                          aws_secret_access_key=SECRET)  # fmt: skip
    client.create_bucket(Bucket="models")
    aws = {"AWS_ACCESS_KEY_ID": "AKIDEXPORT", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_endpoint}  # fmt: skip
    out = tmp_path / "staged"
    config = export_config(run_dir, str(out), adapter=True, destination="s3://models/runs/demo",
                           credentials_secret="s3-creds")  # fmt: skip
    done = export(config, tmp_path, env=aws)
    assert done.returncode == 0, done.stderr[-3000:]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="models", Prefix="runs/demo/")["Contents"]}
    local = {
        f"runs/demo/{p.relative_to(out / 'bundle').as_posix()}" for p in (out / "bundle").rglob("*") if p.is_file()
    }
    assert keys == local and "runs/demo/merged/model.safetensors" in keys and "runs/demo/adapter/README.md" in keys
    body = client.get_object(Bucket="models", Key="runs/demo/merged/model.safetensors")["Body"].read()
    assert body == (out / "merged" / "model.safetensors").read_bytes()
    summary = (out / "summary.json").read_text()
    assert json.loads(summary)["mergedPath"] == "s3://models/runs/demo/merged"
    assert SECRET not in summary + done.stdout + done.stderr

    missing = export(config, tmp_path)  # no credentials in the environment
    assert missing.returncode == 2 and "no AWS_ACCESS_KEY_ID" in missing.stderr
    wrong = export(config.model_copy(update={"export": config.export.model_copy(update={
        "destination": "s3://no-such-bucket/x"})}), tmp_path, env=aws)  # fmt: skip
    assert wrong.returncode == 2 and "upload to s3://no-such-bucket/x failed" in wrong.stderr
    assert SECRET not in wrong.stdout + wrong.stderr


def test_hub_destination_error_paths(run_dir: Path, tmp_path: Path) -> None:
    """No hub is reachable from the tests: a missing token, and an upload to a closed port, are what can be
    checked; the token must not appear in either's output."""
    out = tmp_path / "hub"
    config = export_config(run_dir, str(out), destination="hf://acme/demo-reasoner", credentials_secret="hub-token")
    missing = export(config, tmp_path)
    assert missing.returncode == 2 and "no HF_TOKEN" in missing.stderr
    token = "hf_" + SECRET
    closed = export(config, tmp_path, env={"HF_TOKEN": token, "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                                           "HF_HUB_OFFLINE": "0"})  # fmt: skip
    assert closed.returncode == 2 and "upload to hf://acme/demo-reasoner failed" in closed.stderr
    assert token not in closed.stdout + closed.stderr
    assert not (out / "summary.json").exists()  # a failed export reports no result
