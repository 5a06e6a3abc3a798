"""Benchmark loading from local JSONL/Parquet: conversion, seeded GPQA shuffle, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from reasoning_jobs.evaluate.benchmarks import BenchmarkError, load_benchmark
from reasoning_jobs.evaluate.prompts import format_question


def gpqa_rows(n: int) -> list[dict[str, str]]:
    return [
        {
            "Record ID": f"r{i}",
            "Question": f"Question {i}?",
            "Correct Answer": f"good {i}",
            "Incorrect Answer 1": f"bad {i}.1",
            "Incorrect Answer 2": f"bad {i}.2",
            "Incorrect Answer 3": f"bad {i}.3",
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_gpqa_shuffle_is_seeded_per_question(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "gpqa_main.jsonl", gpqa_rows(40))  # type: ignore[arg-type]
    first = load_benchmark("gpqa_main", tmp_path, seed=7)
    again = load_benchmark("gpqa_main", tmp_path, seed=7)
    other = load_benchmark("gpqa_main", tmp_path, seed=8)
    assert first == again
    assert [q.correct for q in first] != [q.correct for q in other]
    for q in first:
        assert q.choices["ABCD".index(q.correct)] == f"good {q.id[1:]}"
        assert sorted(q.choices) == sorted([f"good {q.id[1:]}", *(f"bad {q.id[1:]}.{k}" for k in (1, 2, 3))])
    # the correct answer is no longer always first, and it is spread over the letters
    counts = {letter: sum(q.correct == letter for q in first) for letter in "ABCD"}
    assert all(count >= 4 for count in counts.values()), counts
    # a question keeps its order whatever else is loaded (sample limit)
    limited = load_benchmark("gpqa_main", tmp_path, seed=7, limit=5)
    assert limited == first[:5]


def test_mmlu_from_parquet_folder(tmp_path: Path) -> None:
    rows = [{"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}]
    (tmp_path / "mmlu").mkdir()
    pd.DataFrame(rows * 3).to_parquet(tmp_path / "mmlu" / "part-0.parquet")
    questions = load_benchmark("mmlu", tmp_path)
    assert len(questions) == 3 and questions[0].correct == "B" and questions[0].choices == ("3", "4", "5", "6")
    prompt = format_question(questions[0])
    assert "2+2?" in prompt and "B) 4" in prompt and '"Answer: X"' in prompt


def test_unknown_benchmark(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=r"unknown benchmark 'gsm8k'.*gpqa_diamond"):
        load_benchmark("gsm8k", tmp_path)


def test_missing_file_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkError, match=str(tmp_path)):
        load_benchmark("gpqa_diamond", tmp_path)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    rows = [{k: v for k, v in row.items() if k != "Incorrect Answer 3"} for row in gpqa_rows(2)]
    write_jsonl(tmp_path / "gpqa_diamond.jsonl", rows)  # type: ignore[arg-type]
    with pytest.raises(
        BenchmarkError, match=r"missing column\(s\) Incorrect Answer 3.*gpqa_diamond.jsonl|gpqa_diamond"
    ):
        load_benchmark("gpqa_diamond", tmp_path)


def test_bad_mmlu_answer_names_the_row(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "mmlu.jsonl",
        [{"question": "q", "choices": ["a", "b"], "answer": 1}, {"question": "q", "choices": ["a", "b"], "answer": 5}],
    )
    with pytest.raises(BenchmarkError, match="row 1"):
        load_benchmark("mmlu", tmp_path)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "mmlu.jsonl").write_text("{not json\n")
    with pytest.raises(BenchmarkError, match="cannot read"):
        load_benchmark("mmlu", tmp_path)
