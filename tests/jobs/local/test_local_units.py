"""The local runner's parts: manifest errors name the field, /workspace maps into the run's folder, the
stage cache keys change exactly when inputs change."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from reasoning_jobs.local.cache import StageCache, StageRecord, fingerprint, stage_key
from reasoning_jobs.local.manifest import ManifestError, load_manifest
from reasoning_jobs.local.workspace import localize, localize_spec

REPO = Path(__file__).resolve().parents[3]


def test_quickstart_manifest_loads() -> None:
    manifest = load_manifest(REPO / "examples" / "quickstart.yaml")
    assert manifest.name == "quickstart" and manifest.local_assets == "quickstart"
    assert manifest.spec.serving.backend == "pytriton"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("kind: Pod\napiVersion: v1\n", "apiVersion/kind must be"),
        ("apiVersion: reasoning-operator.dev/v1alpha1\nkind: ReasoningRun\nmetadata: {}\n", "metadata.name"),
        (
            "apiVersion: reasoning-operator.dev/v1alpha1\nkind: ReasoningRun\nmetadata: {name: x}\n"
            "spec: {training: {learningRate: -1}}\n",
            "spec.training.learningRate: Input should be greater than 0",
        ),
        (
            "apiVersion: reasoning-operator.dev/v1alpha1\nkind: ReasoningRun\nmetadata: {name: x}\n"
            "spec: {training: {globalBatchSize: 10, microBatchSize: 3}}\n",
            "multiple of spec.training.microBatchSize",
        ),
        ("{unclosed", "not valid YAML"),
    ],
)
def test_bad_manifest_is_a_clear_error(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(body)
    with pytest.raises(ManifestError, match=message) as err:
        load_manifest(path)
    assert str(path) in str(err.value)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest"):
        load_manifest(tmp_path / "nope.yaml")


def test_workspace_paths_map_into_the_run_folder(tmp_path: Path) -> None:
    assert localize("/workspace/datasets/x", tmp_path) == str(tmp_path / "datasets" / "x")
    assert localize("/workspaces/other", tmp_path) == "/workspaces/other"
    assert localize("hf://nvidia/Llama-Nemotron-Post-Training-Dataset", tmp_path).startswith("hf://")
    spec = localize_spec(load_manifest(REPO / "examples" / "quickstart.yaml").spec, tmp_path)
    assert spec.model.name == str(tmp_path / "models" / "tiny-llama")
    assert spec.evaluation.data_dir == str(tmp_path / "benchmarks" / "quickstart")


def test_stage_keys_follow_inputs(tmp_path: Path) -> None:
    base = stage_key("training", {"lr": 1e-4}, "up")
    assert base == stage_key("training", {"lr": 1e-4}, "up")
    assert base != stage_key("training", {"lr": 2e-4}, "up")
    assert base != stage_key("training", {"lr": 1e-4}, "other-upstream")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text("1\n")
    before = fingerprint(str(data))
    (data / "a.jsonl").write_text("1\n2\n")
    os.utime(data / "a.jsonl", ns=(1, 1))
    assert before is not None and fingerprint(str(data)) != before
    assert fingerprint("hf://org/name") is None


def test_cache_round_trip_and_miss_on_new_key(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    cache.put("curation", StageRecord("k1", {"samplesRead": 3}, "t0", "t1"))
    hit = cache.get("curation", "k1")
    assert hit is not None and hit.result == {"samplesRead": 3}
    assert cache.get("curation", "k2") is None
    cache.forget("curation")
    assert cache.get("curation", "k1") is None


def test_an_output_directory_is_claimed_by_its_inputs_key_and_other_artifacts_move_aside(tmp_path: Path) -> None:
    from reasoning_jobs.common.artifacts import INPUTS_FILE, claim_output, read_key

    out = tmp_path / "train"
    first = claim_output(out, "training", "key-a")
    assert first.moved_to is None and read_key(out) == "key-a"
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "step-00000400").write_text("weights of experiment a")
    # Same key (a pod lost mid-run, retried): everything stays for the resume.
    again = claim_output(out, "training", "key-a")
    assert again.moved_to is None and (out / "checkpoints" / "step-00000400").is_file()
    # Another key: moved aside, not deleted, and the directory starts empty but for its new key.
    other = claim_output(out, "training", "key-b")
    assert other.moved_to is not None and ".stale-key-a-" in other.moved_to
    assert (Path(other.moved_to) / "checkpoints" / "step-00000400").read_text() == "weights of experiment a"
    assert sorted(p.name for p in out.iterdir()) == [INPUTS_FILE] and read_key(out) == "key-b"
    # A retry of the new run still says where the old artifacts went (status keeps it).
    assert claim_output(out, "training", "key-b").moved_to == other.moved_to


def test_artifacts_without_a_key_are_another_runs_too(tmp_path: Path) -> None:
    from reasoning_jobs.common.artifacts import claim_output

    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text("{}")  # written before artifacts carried keys
    claim = claim_output(out, "evaluation", "key-c")
    assert claim.moved_to is not None and ".stale-unkeyed-" in claim.moved_to
    assert (Path(claim.moved_to) / "results.json").is_file()


def test_the_training_key_follows_config_data_and_base_model(tmp_path: Path) -> None:
    from reasoning_jobs.common.artifacts import claim_output, training_key, training_upstream
    from reasoning_operator.api import ModelSpec, TrainingSpec, TrainingStageConfig

    curated = tmp_path / "curated"
    claim_output(curated, "curation", "curated-1")
    (curated / "training.jsonl").write_text("{}\n")
    config = TrainingStageConfig(
        model=ModelSpec(name="org/model"),
        training=TrainingSpec(),
        data_path=str(curated / "training.jsonl"),
        output_dir=str(tmp_path / "train"),
    )
    key = training_key(config, training_upstream(config))
    assert training_upstream(config) == "curated-1"
    moved = config.model_copy(update={"output_dir": str(tmp_path / "elsewhere")})
    assert training_key(moved, training_upstream(moved)) == key  # where it writes is not an input
    changed = config.model_copy(update={"training": TrainingSpec(learning_rate=2e-4)})
    assert training_key(changed, training_upstream(changed)) != key
    assert training_key(config, "curated-2") != key
    other_base = config.model_copy(update={"model": ModelSpec(name="org/other")})
    assert training_key(other_base, "curated-1") != key


def test_set_overrides_reach_the_validated_spec_and_bad_ones_name_the_flag() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "smollm2-reasoning.yaml"
    manifest = load_manifest(
        example, ["training.maxSteps=4", "training.checkpointInterval=4", "evaluation.benchmarks=[gpqa_diamond]"]
    )
    assert manifest.spec.training.max_steps == 4 and manifest.spec.evaluation.benchmarks == ["gpqa_diamond"]
    assert manifest.local_assets == "smollm2"
    with pytest.raises(ManifestError, match="checkpointInterval must not exceed"):
        load_manifest(example, ["training.maxSteps=4"])  # the cross-field rule still applies
    with pytest.raises(ManifestError, match="--set 'training'"):
        load_manifest(example, ["training"])


def test_a_folder_that_is_no_stage_output_or_holds_the_input_is_never_moved(tmp_path: Path) -> None:
    from reasoning_jobs.common.artifacts import claim_output, read_key

    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's file")
    assert claim_output(mine, "training", "k1").moved_to is None  # nothing of a training run in it
    assert (mine / "notes.txt").is_file() and read_key(mine) == "k1"

    both = tmp_path / "both"
    both.mkdir()
    (both / "training.jsonl").write_text("{}\n")  # the input, and an old run's output beside it
    (both / "metrics.jsonl").write_text("{}\n")
    claim = claim_output(both, "training", "k2", inputs=(str(both / "training.jsonl"),))
    assert claim.moved_to is None and (both / "training.jsonl").is_file()


def test_a_failed_process_is_summed_up_by_its_exception_line() -> None:
    """The one line status shows names what went wrong, not only "exited with code 1:" (as on the H200,
    where the table said only that while the log ended in `sh.CommandNotFound: .../tritonserver`)."""
    import subprocess
    import sys

    from reasoning_jobs.local.processes import last_error

    code = "import logging; logging.warning('retrying'); raise FileNotFoundError('tritonserver is not executable')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 1
    lines = (done.stderr + "\nshutting down\n").splitlines()
    assert last_error(lines) == "FileNotFoundError: tritonserver is not executable"
    assert last_error(["starting", "  ", "killed by the kernel", ""]) == "killed by the kernel"
    assert last_error([]) == "no output"


def test_results_of_another_serving_backend_are_moved_aside_not_overwritten(tmp_path: Path) -> None:
    """On the H200 the same run directory was evaluated on vLLM, then on PyTriton: the second results.json
    overwrote the first, because the evaluation's key left out what served the answers."""
    from reasoning_jobs.common.artifacts import claim_output, evaluation_key
    from reasoning_operator.api.stages import stage_configs

    def config(backend: str) -> Any:
        spec = load_manifest(REPO / "examples" / "smollm2-reasoning.yaml", [f"serving.backend={backend}"]).spec
        return stage_configs(spec, str(tmp_path), "http://x:8000").evaluation

    vllm, pytriton = config("vllm"), config("pytriton")
    assert vllm.served_by == "vllm" and pytriton.served_by == "pytriton"
    out = tmp_path / "eval"
    claim_output(out, "evaluation", evaluation_key(vllm))
    (out / "results.json").write_text("answers vLLM gave")
    moved = claim_output(out, "evaluation", evaluation_key(pytriton)).moved_to
    assert moved is not None and (Path(moved) / "results.json").read_text() == "answers vLLM gave"
