"""The training job end to end on the CPU with a tiny Llama built from a config (transformers + PEFT backend;
a backend the API does not have is refused before any compute)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from reasoning_jobs.train.cli import main
from reasoning_jobs.train.options import STOP_AFTER_STEP_ENV
from reasoning_operator.api import TrainingProgress
from reasoning_operator.api.contract import parse_progress_line

ROOT = Path(__file__).resolve().parents[3]


def cli_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model", str(model), "--data", str(data), "--output-dir", str(out), "--max-seq-length", "256",
        "--no-progress", *extra,
    ]  # fmt: skip


def run_cli(args: list[str]) -> tuple[int, str, str]:
    app = typer.Typer()
    app.command()(main)
    result = CliRunner().invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def metrics(out: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_full_fine_tuning_loss_falls_and_reports(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "full"
    code, stdout, stderr = run_cli(
        cli_args(tiny_model, dataset, out, "--method", "full", "--max-steps", "16", "--global-batch-size", "16",
                 "--micro-batch-size", "4", "--learning-rate", "3e-3", "--checkpoint-interval", "8",
                 "--no-gradient-checkpointing")
    )  # fmt: skip
    assert code == 0, stderr
    rows = metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 17))
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"], [r["loss"] for r in rows]
    # Every JSON line the job printed is a progress line the operator's parser reads.
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    progress = [p for line in lines if (p := parse_progress_line(line, TrainingProgress)) is not None]
    assert len(progress) == len(lines), lines
    assert [p.step for p in progress] == list(range(1, 17)) and progress[-1].max_steps == 16
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 16 and summary["tokensSeen"] == sum(r["tokens"] for r in rows)
    assert summary["finalLoss"] == pytest.approx(rows[-1]["loss"])
    assert (out / "training_curve.png").stat().st_size > 1000
    assert (out / "model" / "config.json").is_file() and (out / "model" / "tokenizer.json").is_file()


def run_job(
    out: Path, model: Path, data: Path, stop_after: int | None = None, lr: str = "2e-3"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "jobs")])}
    env.pop(STOP_AFTER_STEP_ENV, None)
    if stop_after is not None:
        env[STOP_AFTER_STEP_ENV] = str(stop_after)
    args = cli_args(model, data, out, "--max-steps", "6", "--global-batch-size", "8", "--micro-batch-size", "2",
                    "--learning-rate", lr, "--checkpoint-interval", "2", "--merge-weights",
                    "--recompute-layers", "1", "--lora-dropout", "0.1")  # fmt: skip
    command = [sys.executable, "-m", "reasoning_operator.cli", "train", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_killed_job_resumes_with_the_same_batches_and_losses(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    """LoRA with dropout, so the restored RNG state matters as much as weights, optimizer and data position;
    one layer recomputed in backward, so the recomputation wrapper (which must replay dropout) runs too."""
    straight = tmp_path / "straight"
    done = run_job(straight, tiny_model, dataset)
    assert done.returncode == 0, done.stderr

    resumed = tmp_path / "resumed"
    killed = run_job(resumed, tiny_model, dataset, stop_after=3)
    assert killed.returncode == 3, killed.stderr  # hard exit after step 3; last checkpoint is step 2
    assert [r["step"] for r in metrics(resumed)] == [1, 2, 3]
    assert not (resumed / "summary.json").exists()
    again = run_job(resumed, tiny_model, dataset)
    assert again.returncode == 0, again.stderr
    assert "at step 2" in again.stderr
    assert json.loads(again.stdout.splitlines()[0])["step"] == 3

    expected, got = metrics(straight), metrics(resumed)
    assert [r["step"] for r in got] == list(range(1, 7))
    for want, have in zip(expected, got, strict=True):
        assert (have["tokens"], have["samples"], have["target_tokens"]) == (
            want["tokens"],
            want["samples"],
            want["target_tokens"],
        )
        assert have["loss"] == pytest.approx(want["loss"], rel=1e-5, abs=1e-6)
        assert have["learning_rate"] == pytest.approx(want["learning_rate"])
    checkpoints = sorted(p.name for p in (resumed / "checkpoints").iterdir())
    assert checkpoints == ["step-00000002", "step-00000004"]  # two kept, no partial ones

    # The final adapter is standard PEFT: it loads onto the base model and changes its output.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    ids = torch.tensor([[0, 2, 88, 411, 3, 204, 204, 73, 422]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, resumed / "adapter")
        after = tuned(input_ids=ids).logits
    config = json.loads((resumed / "adapter" / "adapter_config.json").read_text())
    assert config["r"] == 64 and config["lora_alpha"] == 128
    assert set(config["target_modules"]) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert (after - before).abs().max() > 1e-3
    merged = AutoModelForCausalLM.from_pretrained(resumed / "merged")
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, after, rtol=1e-4, atol=1e-4)


def test_sigterm_saves_the_step_reached_and_the_next_run_resumes_there(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    """What the kubelet sends on pod deletion, Job suspension or Kueue preemption: with no periodic checkpoint
    due, the job still stops at a step boundary with that step saved, exits 143, and the rerun resumes there."""
    out = tmp_path / "term"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "jobs")])}
    env.pop(STOP_AFTER_STEP_ENV, None)
    args = cli_args(tiny_model, dataset, out, "--max-steps", "60", "--global-batch-size", "4",
                    "--micro-batch-size", "2", "--checkpoint-interval", "60")  # fmt: skip
    command = [sys.executable, "-m", "reasoning_operator.cli", "train", *args]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not ((out / "metrics.jsonl").is_file() and len(metrics(out)) >= 2):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    reached = metrics(out)[-1]["step"]
    assert 2 <= reached < 60
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"step-{reached:08d}"]
    assert not (out / "summary.json").exists()
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stderr
    assert f"at step {reached}" in again.stderr
    assert [r["step"] for r in metrics(out)] == list(range(1, 61))


def test_another_config_in_the_same_directory_starts_at_step_0_and_keeps_the_old_artifacts(
    tiny_model: Path, dataset: Path, tmp_path: Path
) -> None:
    """A run deleted and created again under the same name with another config, or two runs on one claim:
    the real job CLI on one shared directory. The second config must not resume the first one's checkpoints."""
    shared = tmp_path / "shared" / "train"
    killed = run_job(shared, tiny_model, dataset, stop_after=5)  # experiment A: checkpoints at steps 2 and 4
    assert killed.returncode == 3, killed.stderr
    old_key = json.loads((shared / "inputs.json").read_text())["key"]
    assert sorted(p.name for p in (shared / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]

    other = run_job(shared, tiny_model, dataset, lr="1e-3")  # experiment B: another learning rate
    assert other.returncode == 0, other.stderr
    assert "resumed from" not in other.stderr and "moved" in other.stderr and "aside" in other.stderr
    assert json.loads(other.stdout.splitlines()[0])["step"] == 1  # from step 0, not 4
    assert [r["step"] for r in metrics(shared)] == list(range(1, 7))
    summary = json.loads((shared / "summary.json").read_text())
    assert summary["inputsKey"] != old_key and summary["staleArtifacts"]
    stale = Path(summary["staleArtifacts"])
    assert stale.parent == shared.parent and f".stale-{old_key}-" in stale.name
    assert sorted(p.name for p in (stale / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    assert [r["step"] for r in metrics(stale)] == [1, 2, 3, 4, 5]  # experiment A, kept as it was


def test_bad_input_fails_before_compute(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "bad"
    code, _, err = run_cli(cli_args(tiny_model, tmp_path / "missing.jsonl", out))
    assert code == 2 and "missing.jsonl does not exist" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, _, err = run_cli(cli_args(tiny_model, empty, out))
    assert code == 2 and "is empty" in err
    code, _, err = run_cli(cli_args(tiny_model, dataset, out, "--global-batch-size", "10", "--micro-batch-size", "4"))
    assert code == 2 and "multiple of spec.training.microBatchSize" in err
    long = tmp_path / "long.jsonl"
    long.write_text(
        dataset.read_text().splitlines()[0] + "\n" + json.dumps({"input": "q", "output": "many " * 400}) + "\n"
    )
    code, _, err = run_cli(cli_args(tiny_model, long, out))
    assert code == 2 and "long.jsonl:2: sample is" in err and "longer than maxSeqLength 256" in err
    code, _, err = run_cli(cli_args(tiny_model, dataset, out, "--backend", "nemo-automodel"))
    assert code == 2 and "training.backend" in err and "'transformers'" in err  # the API has no other backend
    if not torch.cuda.is_available():
        code, _, err = run_cli(cli_args(tiny_model, dataset, out, "--device", "cuda"))
        assert code == 2 and "no CUDA GPU" in err
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()


def test_compiled_layers_are_cached_on_the_run_volume(tiny_model: Path, dataset: Path, tmp_path: Path) -> None:
    """A resumed pod finds the compiled (and, on CUDA, tuned) layers beside its checkpoints."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "operator"), str(ROOT / "jobs")])}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    out = tmp_path / "compiled"
    args = cli_args(tiny_model, dataset, out, "--max-steps", "2", "--global-batch-size", "4", "--micro-batch-size",
                    "2", "--checkpoint-interval", "1", "--compile")  # fmt: skip
    command = [sys.executable, "-m", "reasoning_operator.cli", "train", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    cache = out / "compile-cache"
    assert cache.is_dir() and any(p.is_file() for p in cache.rglob("*")), sorted(out.iterdir())


def test_lora_flags_override_the_config_file_and_are_validated(tmp_path: Path) -> None:
    """--lora-* flags land in spec.training.lora on top of --config; the default dropout is the reference
    recipe's 0; an out-of-range value is rejected by the same pydantic model the operator uses."""
    import pydantic

    from reasoning_jobs.train.cli import build_config

    config = tmp_path / "stage.yaml"
    config.write_text(
        "model: {name: tiny}\ndataPath: /data/training.jsonl\noutputDir: /out\ntraining: {lora: {rank: 8, alpha: 16}}\n"
    )
    base = build_config(config, {}, None, None, None)
    assert (base.training.lora.rank, base.training.lora.alpha, base.training.lora.dropout) == (8, 16, 0.0)
    stage = build_config(config, {}, None, None, None, {"rank": None, "alpha": 32, "dropout": 0.1})
    assert (stage.training.lora.rank, stage.training.lora.alpha, stage.training.lora.dropout) == (8, 32, 0.1)
    with pytest.raises(pydantic.ValidationError, match="dropout"):
        build_config(config, {}, None, None, None, {"dropout": 1.5})
