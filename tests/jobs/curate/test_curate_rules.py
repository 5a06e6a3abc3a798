"""Fast checks of the pieces the pipeline is built from (no Ray): rules, parsing, block splitting, file
selection, flag parsing, and the synthetic generator's determinism."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from reasoning_jobs.curate import records as rules
from reasoning_jobs.curate.cli import parse_size
from reasoning_jobs.curate.pipeline import allocator_env, mimalloc_library, preloadable
from reasoning_jobs.curate.records import RecordError, parse_record
from reasoning_jobs.curate.sources import SourceError, fsspec_url, plan_blocks, read_block_lines, select_files
from reasoning_jobs.datasets.nemotron_synthetic import generate


@pytest.mark.parametrize(
    ("output", "reasoning", "rule"),
    [
        ("<think>\nstep\n</think>\n\nanswer", "on", None),
        ("<think>\n \n\t</think>\n\nanswer", "on", rules.EMPTY_THINK),
        ("<think>\nstep\n\nanswer", "on", rules.MALFORMED_THINK),
        ("step\n</think>\n\nanswer", "on", rules.MALFORMED_THINK),
        ("</think>step<think>answer", "on", rules.MALFORMED_THINK),
        ("<think>a</think><think>b</think>answer", "on", rules.MALFORMED_THINK),
        ("just an answer", "on", rules.MISSING_THINK),
        ("<think>\nstep\n</think>\n\n  ", "on", rules.EMPTY_ANSWER),
        ("plain answer", "off", None),
        ("<think>\nstep\n</think>\n\nanswer", "off", rules.THINK_IN_OFF),
        ("stray </think> tag", "off", rules.THINK_IN_OFF),
        ("   \n", "off", rules.EMPTY_OUTPUT),
    ],
)
def test_think_rules(output: str, reasoning: str, rule: str | None) -> None:
    assert rules.think_violation(output, reasoning) == rule


@pytest.mark.parametrize(
    ("text", "boxed"),
    [
        ("The answer is \\boxed{42}.", True),
        ("\\boxed{\\frac{1}{2}}", True),
        ("\\boxed {x = 3}", True),
        ("\\boxed{}", False),
        ("\\boxed{  }", False),
        ("\\boxed{unclosed", False),
        ("The answer is 42.", False),
    ],
)
def test_boxed_answer(text: str, boxed: bool) -> None:
    assert rules.has_boxed_answer(text) is boxed


def test_boxed_answer_is_looked_for_after_the_reasoning() -> None:
    assert rules.final_answer("<think>\\boxed{1}</think>The answer is 1.") == "The answer is 1."


GOOD = {
    "input": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
        {"role": "user", "content": "?"},
    ],
    "output": "x",
    "reasoning": "off",
    "system_prompt": "detailed thinking off",
    "category": "chat",
    "license": "cc-by-4.0",
    "generator": "g",
    "used_in_training": ["Ultra", "Nano"],
    "version": "v1",
}


def test_parse_record_keeps_every_turn_and_accepts_a_comma_separated_model_list() -> None:
    record = parse_record(json.dumps(GOOD))
    assert [m["role"] for m in record.input] == ["user", "assistant", "user"]
    assert parse_record(json.dumps({**GOOD, "used_in_training": "Ultra, Nano"})).used_in_training == ("Ultra", "Nano")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"input": [', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "output"}), "missing field 'output'"),
        (json.dumps({**GOOD, "reasoning": "maybe"}), "field 'reasoning' must be 'on' or 'off'"),
        (json.dumps({**GOOD, "input": []}), "field 'input' must be a non-empty list"),
        (json.dumps({**GOOD, "input": [{"role": "assistant", "content": "a"}]}), "input[0].role must be 'user'"),
        (json.dumps({**GOOD, "input": [{"role": "user"}]}), "input[0].content must be a string"),
        (json.dumps({**GOOD, "used_in_training": 3}), "field 'used_in_training' must be a list of strings"),
    ],
)
def test_parse_record_names_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(RecordError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_record(line)


def test_language_text_covers_all_turns_and_the_response_without_tags() -> None:
    text = rules.language_text(GOOD["input"], "<think>\nabc\n</think>\n\ndef")  # type: ignore[arg-type]
    assert text == "hi yo ? abc def"


@pytest.mark.parametrize("block_size", [1, 7, 50, 64, 1000, 10**6])
def test_blocks_own_every_line_exactly_once(tmp_path: Path, block_size: int) -> None:
    rng = random.Random(block_size)
    lines = [("x" * rng.randint(0, 80)).encode() for _ in range(200)]
    path = tmp_path / "SFT" / "chat" / "chat.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    files = select_files(str(tmp_path), ["chat"])
    got = [line for block in plan_blocks(files, block_size) for line in read_block_lines(block)]
    assert got == lines


def test_file_filters_are_substrings_of_the_file_name(tmp_path: Path) -> None:
    for name in ("SFT/math/math_v1.1.jsonl", "SFT/math/math_v1.jsonl", "SFT/chat/chat.jsonl", "SFT/chat/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}\n")
    assert [f.relative for f in select_files(str(tmp_path), ["math_v1.1", "chat"])] == [
        "SFT/chat/chat.jsonl",
        "SFT/math/math_v1.1.jsonl",
    ]
    assert len(select_files(str(tmp_path), [])) == 3
    with pytest.raises(SourceError, match=r"no \*.jsonl file .* matches"):
        select_files(str(tmp_path), ["code"])
    with pytest.raises(SourceError, match="does not exist"):
        select_files(str(tmp_path / "missing"), ["chat"])


def test_hub_dataset_ids_map_to_fsspec_urls() -> None:
    assert fsspec_url("hf://nvidia/Llama-Nemotron-Post-Training-Dataset") == (
        "hf://datasets/nvidia/Llama-Nemotron-Post-Training-Dataset"
    )
    assert fsspec_url("s3://bucket/data") == "s3://bucket/data"
    assert fsspec_url("/data/nemotron") == "/data/nemotron"


def test_parse_size() -> None:
    assert parse_size("64MiB") == 64 * 2**20
    assert parse_size("256mb") == 256 * 10**6
    assert parse_size("4096") == 4096
    with pytest.raises(Exception, match="not a size"):
        parse_size("lots")


def test_generator_is_deterministic_and_schema_exact(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", samples=300, seed=7, long_chars=2000)
    second = generate(tmp_path / "b", samples=300, seed=7, long_chars=2000)
    assert first == second
    for name in first["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    third = generate(tmp_path / "c", samples=300, seed=8, long_chars=2000)
    assert third != first
    keys = {"input", "output", "reasoning", "system_prompt", "category", "license", "generator", "used_in_training"}
    keys.add("version")
    for name in first["files"]:
        for line in (tmp_path / "a" / name).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            assert set(record) == keys
            assert record["input"][0]["role"] == "user"
            assert record["system_prompt"] == f"detailed thinking {record['reasoning']}"
            parse_record(line)


def test_line_errors_number_lines_across_blocks_and_stay_short() -> None:
    from reasoning_jobs.curate.pipeline import MAX_ERROR_CHARS, _line_errors

    def meta(file_index: int, block_index: int, lines: int, errors: list[tuple[int, str]]) -> dict[str, object]:
        block = {"file_index": file_index, "block_index": block_index, "relative": f"SFT/f{file_index}.jsonl"}
        return {"block": block, "lines": lines, "errors": errors}

    metas = [meta(0, 1, 5, [(2, "missing field 'output'")]), meta(0, 0, 10, [(0, "x" * 500)]), meta(1, 0, 3, [])]
    errors = _line_errors(metas)
    assert errors[0].startswith("SFT/f0.jsonl:1: xxx") and len(errors[0]) == MAX_ERROR_CHARS
    assert errors[1] == "SFT/f0.jsonl:13: missing field 'output'"


def test_unreachable_or_unknown_hub_dataset_is_a_clear_error() -> None:
    # The hub is out of reach here (and this id does not exist where it is reachable): either way, a clear error.
    with pytest.raises(SourceError, match=r"cannot list hf://no-such-org-7f3a/no-such-dataset-7f3a"):
        select_files("hf://no-such-org-7f3a/no-such-dataset-7f3a", ["chat"])


def test_workers_get_mimalloc_unless_the_user_named_an_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_JEMALLOC_LIB_PATH", raising=False)
    library = mimalloc_library()
    assert library is not None and library.name.startswith("libmimalloc.so") and library.is_file()
    assert allocator_env() == {"RAY_JEMALLOC_LIB_PATH": str(library)}
    monkeypatch.setenv("RAY_JEMALLOC_LIB_PATH", "/opt/lib/libtcmalloc.so")
    assert allocator_env() == {"RAY_JEMALLOC_LIB_PATH": "/opt/lib/libtcmalloc.so"}


def test_a_library_that_cannot_be_preloaded_is_not_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found on the real node: the curation image had mimalloc but not libatomic.so.1, so every Ray process
    failed to start. A library the loader refuses is skipped (Ray's own jemalloc is used)."""
    broken = tmp_path / "libmimalloc.so"
    broken.write_bytes(b"not an ELF file")
    assert not preloadable(broken)
    monkeypatch.delenv("RAY_JEMALLOC_LIB_PATH", raising=False)
    monkeypatch.setattr("reasoning_jobs.curate.pipeline.mimalloc_library", lambda: broken)
    assert allocator_env() == {}
    library = mimalloc_library()
    if library is not None:  # where the wheel and its dependencies are installed (this venv)
        assert preloadable(library)
