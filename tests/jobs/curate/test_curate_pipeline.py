"""The real job end to end: `reasoning curate` in a subprocess, NeMo Curator's Ray Data executor, real fastText
language ID and the offline tokenizer, on a generated dataset whose defects are known (manifest.json).

Ray start-up is slow, so each module-scoped fixture runs the job once and many tests read its output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reasoning_jobs.common.assets import offline_tokenizer_path
from reasoning_jobs.datasets.nemotron_synthetic import generate
from reasoning_operator.api import CurationProgress
from reasoning_operator.api.contract import parse_progress_line

SELECTED = ["SFT/chat/chat.jsonl", "SFT/math/math_v1.1.jsonl"]
MAX_PROMPT, MAX_COMPLETION = 1024, 2048
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
# Lines injected into math_v1.1.jsonl (1-based line numbers after injection) to check the file:line errors.
BAD_JSON_LINE, MISSING_FIELD_LINE = 3, 10


def run_cli(*args: str, timeout: int = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One `reasoning curate` run; a run past `timeout` fails the test with the tail of what it printed, so a
    slow machine (a loaded CI runner) and a hung Ray start can be told apart."""
    command = [sys.executable, "-m", "reasoning_operator.cli", "curate", *args]
    try:
        return subprocess.run(command, capture_output=True, text=True, env={**ENV, **(env or {})},
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        printed = expired.stderr.decode(errors="replace") if isinstance(expired.stderr, bytes) else expired.stderr
        pytest.fail(f"reasoning curate ran past {timeout} s; the end of its stderr:\n{(printed or '')[-4000:]}")


def curriculum_args(source: str, out: Path) -> list[str]:
    """The reference recipe's flags over the fixture, as every curriculum run here uses them."""
    return [
        "--input-dir", source,
        "--output-dir", str(out),
        "--filename-filter", "math_v1.1",
        "--filename-filter", "chat",
        "--used-in-training", "Nano",
        "--tokenizer", str(offline_tokenizer_path()),
        "--max-token-count", str(MAX_PROMPT),
        "--max-completion-token-count", str(MAX_COMPLETION),
        "--n-workers", "2",
        "--device", "cpu",
        "--max-error-rate", "0.01",
        "--block-size", "48KiB",
    ]  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("nemotron")
    manifest = generate(root, samples=1200, seed=3, bad_fraction=0.3, long_chars=30_000)
    math = root / "SFT/math/math_v1.1.jsonl"
    lines = math.read_text(encoding="utf-8").splitlines()
    missing_output = json.loads(lines[5])
    del missing_output["output"]
    lines.insert(BAD_JSON_LINE - 1, '{"input": [{"role": "user", "content": "cut off')
    lines.insert(MISSING_FIELD_LINE - 1, json.dumps(missing_output))
    math.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, manifest


def expected_drops(manifest: dict[str, Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for name in SELECTED:
        for kind, count in manifest["files"][name]["kinds"].items():
            counts[manifest["defect_rules"].get(kind, kind)] += count
    return counts


@pytest.fixture(scope="module")
def curriculum_run(dataset: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root, _ = dataset
    out = tmp_path_factory.mktemp("curated")
    proc = run_cli(*curriculum_args(str(root), out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out.parent / f"{out.name}.log").write_text(proc.stderr)  # beside the output, which tests list
    (out.parent / f"{out.name}.stdout").write_text(proc.stdout)
    return out


def test_summary_counts_match_the_known_defects(curriculum_run: Path, dataset: tuple[Path, dict[str, Any]]) -> None:
    _, manifest = dataset
    summary = json.loads((curriculum_run / "summary.json").read_text())
    expected = expected_drops(manifest)
    records = sum(manifest["files"][name]["records"] for name in SELECTED)
    assert summary["malformedLines"] == 2
    assert summary["samplesRead"] == records + 2  # math_v1.jsonl and code are not read
    assert summary["samplesWritten"] == expected["good"]
    for rule, count in summary["dropped"].items():
        assert count == expected.get(rule, 0), rule
    # every defect kind of the generator is present in the fixture, and each was dropped by its rule
    assert {r for r, c in summary["dropped"].items() if c} == set(manifest["defect_rules"].values())
    assert summary["samplesRead"] == summary["samplesWritten"] + sum(summary["dropped"].values()) + 2
    good = Counter[str]()
    for name in SELECTED:
        good.update(manifest["files"][name]["good_reasoning"])
    assert (summary["reasoningOn"], summary["reasoningOff"]) == (good["on"], good["off"])
    assert set(summary["tokenPercentiles"]) == {"prompt", "completion"}
    assert summary["tokenPercentiles"]["completion"]["max"] <= MAX_COMPLETION


def test_stdout_reports_the_blocks_as_they_are_written_ending_with_all(curriculum_run: Path) -> None:
    """The progress lines the operator reads into status.curationProgress (from the pod's log)."""
    stdout = (curriculum_run.parent / f"{curriculum_run.name}.stdout").read_text()
    seen = [p for line in stdout.splitlines() if (p := parse_progress_line(line, CurationProgress)) is not None]
    blocks = json.loads((curriculum_run / "summary.json").read_text())["blocks"]
    assert blocks > 1 and seen, stdout[-2000:]
    assert seen[0].blocks_done == 0 and seen[-1].blocks_done == blocks
    assert {p.blocks_total for p in seen} == {blocks}
    done = [p.blocks_done for p in seen]
    assert done == sorted(done), done  # never back


def test_ray_workers_run_on_mimalloc(curriculum_run: Path) -> None:
    """The allocator is a measured part of the job's speed (bench/curate/README.md), and Ray strips LD_PRELOAD
    from workers unless told otherwise: every block must report the worker's mapped mimalloc."""
    log = (curriculum_run.parent / f"{curriculum_run.name}.log").read_text()
    allocators = json.loads(log.split("blocks by worker allocator: ", 1)[1].splitlines()[0])
    assert set(allocators) == {"mimalloc"}, allocators
    assert "Ray workers preload " in log and "libmimalloc.so" in log


def test_blocks_run_in_the_worker_processes_warmed_while_the_driver_planned(curriculum_run: Path) -> None:
    """The warm-up loads tokenizer tools and fastText into Ray's workers before the pipeline starts; it only pays
    where Ray then runs the blocks in those processes (Ray Data's own actors must not take them all)."""
    log = (curriculum_run.parent / f"{curriculum_run.name}.log").read_text()
    match = re.search(r"(\d+) of (\d+) blocks ran in the (\d+) warmed worker processes", log)
    assert match, log[-2000:]
    in_warmed, blocks, warmed = map(int, match.groups())
    assert 1 <= warmed <= 2 and blocks >= 10 and in_warmed >= blocks // 2


def test_fastokens_counted_every_block_and_every_spot_check_agreed(curriculum_run: Path) -> None:
    log = (curriculum_run.parent / f"{curriculum_run.name}.log").read_text()
    assert "token counts: fastokens (spot-checked against tokenizers)" in log
    counters = json.loads(log.split("blocks by token counter: ", 1)[1].split(";", 1)[0])
    assert set(counters) == {"fastokens"} and sum(counters.values()) >= 10
    assert "differed between fastokens and tokenizers" not in log
    assert json.loads((curriculum_run / "summary.json").read_text())["tokenCounter"] == "fastokens"


def test_malformed_lines_are_reported_with_file_and_line(curriculum_run: Path) -> None:
    errors = json.loads((curriculum_run / "summary.json").read_text())["errors"]
    assert errors[0].startswith(f"SFT/math/math_v1.1.jsonl:{BAD_JSON_LINE}: invalid JSON")
    assert errors[1] == f"SFT/math/math_v1.1.jsonl:{MISSING_FIELD_LINE}: missing field 'output'"


def test_output_is_templated_with_the_reasoning_system_prompt_and_every_turn(curriculum_run: Path) -> None:
    rows = read_jsonl(curriculum_run / "training.jsonl")
    assert len(rows) == json.loads((curriculum_run / "summary.json").read_text())["samplesWritten"]
    multi_turn = 0
    for row in rows:
        header = f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\ndetailed thinking {row['reasoning']}"
        assert row["input"].startswith(header + "<|eot_id|><|start_header_id|>user<|end_header_id|>")
        assert row["input"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
        assert row["output"].endswith("<|eot_id|>")
        if row["reasoning"] == "on":
            assert row["output"].startswith("<think>\n") and "\n</think>\n\n" in row["output"]
        else:
            assert "<think>" not in row["output"]
        if row["category"] == "math":
            assert "\\boxed{" in row["output"]
        assert row["version"] == "v1.1"  # math_v1.jsonl was not selected
        assert "Nano" in row["used_in_training"]
        assert row["input"].isascii() and row["output"].isascii(), "non-English sample kept"
        multi_turn += row["input"].count("<|start_header_id|>user<|end_header_id|>") > 1
    assert multi_turn > 10


def test_curriculum_interleaves_on_off_and_sorts_each_bucket_across_all_shards(curriculum_run: Path) -> None:
    from transformers import AutoTokenizer

    assert len(list((curriculum_run / "shards").glob("*.jsonl"))) >= 10  # many blocks, merged globally
    tokenizer = AutoTokenizer.from_pretrained(str(offline_tokenizer_path()))
    rows = read_jsonl(curriculum_run / "training.jsonl")
    buckets = [row["reasoning"] for row in rows]
    pairs = min(buckets.count("on"), buckets.count("off"))
    assert buckets[: 2 * pairs] == ["on", "off"] * pairs
    assert len(set(buckets[2 * pairs :])) <= 1
    for bucket in ("on", "off"):
        outputs = [row["output"] for row in rows if row["reasoning"] == bucket]
        lengths = [len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs]
        assert lengths == sorted(lengths)
        assert lengths[0] < lengths[-1]
        assert max(lengths) <= MAX_COMPLETION
    prompts = [len(tokenizer(row["input"], add_special_tokens=False)["input_ids"]) for row in rows]
    assert max(prompts) <= MAX_PROMPT


@pytest.fixture(scope="module")
def config_run(dataset: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's path: --config with the stage model, no curriculum, quotas and removed columns."""
    from reasoning_operator.api import CurationSpec, CurationStageConfig, DatasetSpec

    root, _ = dataset
    out = tmp_path_factory.mktemp("curated-config")
    config = CurationStageConfig(
        dataset=DatasetSpec(source=str(root), filename_filters=["math_v1.1", "chat"], used_in_training="Nano"),
        curation=CurationSpec(
            max_token_count=MAX_PROMPT,
            max_completion_token_count=MAX_COMPLETION,
            curriculum=False,
            workers=1,
            remove_columns=["license", "generator"],
            category_caps={"chat": 150},
            on_off_ratio=0.5,
            max_error_rate=0.01,
            token_counter="tokenizers",
        ),
        tokenizer=str(offline_tokenizer_path()),
        output_dir=str(out),
    )
    path = out / "config.yaml"
    path.write_text(json.dumps(config.to_wire()))
    proc = run_cli("--config", str(path), "--block-size", "64KiB")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_no_curriculum_keeps_input_order(config_run: Path, dataset: tuple[Path, dict[str, Any]]) -> None:
    root, _ = dataset
    rows = read_jsonl(config_run / "training.jsonl")
    assert rows
    keys = [(row["reasoning"], row["output"]) for row in rows]
    position = 0
    for name in SELECTED:  # sorted file order, then line order
        for line in (root / name).read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
                key = (record["reasoning"], record["output"] + "<|eot_id|>")
            except (json.JSONDecodeError, KeyError):
                continue
            if position < len(keys) and key == keys[position]:
                position += 1
    assert position == len(keys), f"row {position} is out of input order"


def test_quotas_cap_categories_and_hit_the_on_off_ratio(config_run: Path, curriculum_run: Path) -> None:
    summary = json.loads((config_run / "summary.json").read_text())
    unlimited = json.loads((curriculum_run / "summary.json").read_text())
    rows = read_jsonl(config_run / "training.jsonl")
    categories = Counter(row["category"] for row in rows)
    assert categories["chat"] <= 150
    on, off = summary["reasoningOn"], summary["reasoningOff"]
    assert on == int(0.5 * off) or off == int(on / 0.5)
    assert summary["dropped"]["category_cap"] > 0 and summary["dropped"]["on_off_ratio"] > 0
    assert summary["samplesWritten"] == unlimited["samplesWritten"] - (
        summary["dropped"]["category_cap"] + summary["dropped"]["on_off_ratio"]
    )
    assert summary["samplesRead"] == summary["samplesWritten"] + sum(summary["dropped"].values()) + 2
    # counted by tokenizers here and by fastokens in the curriculum run: the same samples pass the token limits
    assert (summary["tokenCounter"], unlimited["tokenCounter"]) == ("tokenizers", "fastokens")
    assert {k: v for k, v in summary["dropped"].items() if "long" in k} == {
        k: v for k, v in unlimited["dropped"].items() if "long" in k
    }
    assert set(rows[0]) == {"input", "output", "reasoning", "system_prompt", "category", "used_in_training", "version"}


def test_too_many_malformed_lines_fail_the_job_naming_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "data"
    generate(root, samples=20, seed=1, bad_fraction=0.0)
    chat = root / "SFT/chat/chat.jsonl"
    chat.write_text(chat.read_text() + "not json\n", encoding="utf-8")
    lines = len(chat.read_text().splitlines())
    out = tmp_path / "out"
    proc = run_cli(
        "--input-dir", str(root), "--output-dir", str(out), "--filename-filter", "chat",
        "--tokenizer", str(offline_tokenizer_path()), "--n-workers", "1", "--max-error-rate", "0.001",
    )  # fmt: skip
    assert proc.returncode == 1
    assert f"SFT/chat/chat.jsonl:{lines}: invalid JSON" in proc.stderr
    assert "max error rate" in proc.stderr
    assert json.loads((out / "summary.json").read_text())["malformedLines"] == 1
    assert not (out / "training.jsonl").exists()


def test_missing_input_directory_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("--input-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "out"),
                   "--tokenizer", str(offline_tokenizer_path()))  # fmt: skip
    assert proc.returncode == 1
    assert f"input directory {tmp_path / 'nope'} does not exist" in proc.stderr


def test_unknown_tokenizer_is_a_clear_error(tmp_path: Path, dataset: tuple[Path, dict[str, Any]]) -> None:
    # HF_HUB_OFFLINE=1: the hub is the one boundary a test cannot reach; the job must say so, not hang.
    root, _ = dataset
    proc = run_cli("--input-dir", str(root), "--output-dir", str(tmp_path), "--tokenizer", "no-such-org/no-such-model",
                   "--n-workers", "1")  # fmt: skip
    assert proc.returncode == 1
    assert "cannot load tokenizer 'no-such-org/no-such-model'" in proc.stderr
    from reasoning_jobs.curate.tokenization import TokenizerError, load_tokenizer

    with pytest.raises(TokenizerError, match=r"cannot load tokenizer '.*/missing'"):
        load_tokenizer(str(tmp_path / "missing"))


def test_unknown_device_is_refused_and_gpu_runs_on_the_cpu(tmp_path: Path) -> None:
    proc = run_cli("--input-dir", str(tmp_path), "--output-dir", str(tmp_path), "--device", "tpu")
    assert proc.returncode == 2
    assert "not supported" in proc.stderr
    # The tutorial passes --device gpu: accepted, said, and run on the CPU (here it then fails on the missing data).
    proc = run_cli("--input-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "out"), "--device", "gpu")
    assert "--device gpu: every curation stage here is CPU-bound" in proc.stderr
    assert "does not exist" in proc.stderr and proc.returncode == 1


def test_files_per_partition_is_refused_with_the_alternative(tmp_path: Path) -> None:
    proc = run_cli("--input-dir", str(tmp_path), "--output-dir", str(tmp_path), "--json-files-per-partition", "2")
    assert proc.returncode == 2
    assert "--json-files-per-partition" in proc.stderr and "--json-blocksize" in proc.stderr


# The NeMo Curator tutorial's columns to remove, in its order.
TUTORIAL_REMOVED = ["version", "license", "generator", "category", "used_in_training", "system_prompt", "reasoning"]


def test_the_tutorials_command_line_as_published(
    curriculum_run: Path, dataset: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The seed's flags verbatim (list flags with several values, --json-blocksize, --input-dir at SFT/), with
    only what cannot be verbatim here replaced: the paths, the tokenizer (no hub) and --n-workers 8 -> 2 (CI
    has 2 cores). Same rows as the project's own flag form, less the removed columns."""
    root, _ = dataset
    out = tmp_path / "curated-data"
    proc = run_cli(
        "--input-dir", str(root / "SFT"),
        "--filename-filter", "chat", "math_v1.1",
        "--remove-columns", *TUTORIAL_REMOVED,
        "--tokenizer", str(offline_tokenizer_path()),
        "--max-token-count", str(MAX_PROMPT),
        "--max-completion-token-count", str(MAX_COMPLETION),
        "--output-dir", str(out),
        "--used-in-training", "Nano",
        "--max-error-rate", "0.01",
        "--json-blocksize", "100mb", "--n-workers", "2", "--device", "cpu",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_jsonl(out / "training.jsonl")
    ours = read_jsonl(curriculum_run / "training.jsonl")
    assert rows and all(set(row).isdisjoint(TUTORIAL_REMOVED) for row in rows)
    assert rows == [{k: v for k, v in row.items() if k not in TUTORIAL_REMOVED} for row in ours]


@pytest.fixture(scope="module")
def s3_endpoint() -> Any:
    """An S3-API server on loopback (moto's standalone server): no cloud is reachable from the tests, so this
    stands in for AWS/MinIO. Everything on the job's side is real: s3fs, botocore, HTTP, Ray workers."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_s3_source_gives_the_same_training_set(
    s3_endpoint: str, dataset: tuple[Path, dict[str, Any]], curriculum_run: Path, tmp_path: Path
) -> None:
    """The same files in a bucket, credentials and endpoint from the environment (what the pod gets from
    spec.dataset.credentialsSecret), curated with the same flags: byte-identical output."""
    import boto3

    root, _ = dataset
    aws = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=s3_endpoint,
                          aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
    client.create_bucket(Bucket="datasets")
    for path in sorted(root.rglob("*.jsonl")):
        client.upload_file(str(path), "datasets", f"nemotron/{path.relative_to(root).as_posix()}")
    out = tmp_path / "from-s3"
    proc = run_cli(*curriculum_args("s3://datasets/nemotron", out), env=aws)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "training.jsonl").read_bytes() == (curriculum_run / "training.jsonl").read_bytes()
    local, remote = (json.loads((d / "summary.json").read_text()) for d in (curriculum_run, out))
    for key in ("samplesRead", "samplesWritten", "dropped", "malformedLines", "reasoningOn", "reasoningOff", "errors"):
        assert remote[key] == local[key], key  # errors name files relative to the source, so these match too
