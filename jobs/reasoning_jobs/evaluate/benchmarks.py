"""GPQA Diamond, GPQA Main and MMLU as multiple-choice questions (question, choices, correct letter).

From the hub through `datasets` (GPQA is gated: the token comes from HF_TOKEN, which the operator maps from
the run's Secret) or from local JSONL/Parquet files in the same shape (`evaluation.dataDir`). GPQA lists the
correct answer first, so its choices are shuffled with a per-question RNG seeded by (seed, question id): the
order does not depend on which other questions were loaded, and the seed is recorded in the results.
"""

from __future__ import annotations

import os
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Question:
    benchmark: str
    id: str
    question: str
    choices: tuple[str, ...]
    correct: str
    subject: str | None = None

    @property
    def letters(self) -> str:
        return string.ascii_uppercase[: len(self.choices)]


@dataclass(frozen=True)
class BenchmarkSource:
    """Where a benchmark lives on the hub, which columns it must have and how a row becomes a Question."""

    name: str
    hub_path: str
    hub_config: str | None
    split: str
    columns: tuple[str, ...]
    convert: Callable[[str, Mapping[str, Any], int, int], Question]


GPQA_COLUMNS = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
MMLU_COLUMNS = ("question", "choices", "answer")


def _clean(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def gpqa_question(benchmark: str, row: Mapping[str, Any], index: int, seed: int) -> Question:
    """Correct answer first in the data → shuffled with Random(f"{seed}:{id}")."""
    qid = _clean(row.get("Record ID")) or f"{benchmark}-{index}"
    answers = [_clean(row[column]) for column in GPQA_COLUMNS[1:]]
    order = list(range(len(answers)))
    random.Random(f"{seed}:{qid}").shuffle(order)
    choices = tuple(answers[i] for i in order)
    correct = string.ascii_uppercase[order.index(0)]
    subject = _clean(row.get("High-level domain")) or None
    return Question(benchmark, qid, str(row["Question"]).strip(), choices, correct, subject)


def mmlu_question(benchmark: str, row: Mapping[str, Any], index: int, seed: int) -> Question:
    """MMLU keeps its own choice order; `answer` is the index of the correct choice (or its letter)."""
    choices = tuple(_clean(choice) for choice in row["choices"])
    if len(choices) < 2:
        raise ValueError(f"row {index}: 'choices' must list at least two options")
    answer = row["answer"]
    letters = string.ascii_uppercase[: len(choices)]
    if isinstance(answer, str) and answer.strip().upper() in letters:
        correct = answer.strip().upper()
    else:
        position = int(answer)
        if not 0 <= position < len(choices):
            raise ValueError(f"row {index}: 'answer' {answer!r} is not an index into {len(choices)} choices")
        correct = letters[position]
    subject = _clean(row.get("subject")) or None
    qid = _clean(row.get("id")) or f"{benchmark}-{subject or 'all'}-{index}"
    return Question(benchmark, qid, str(row["question"]).strip(), choices, correct, subject)


BENCHMARKS: dict[str, BenchmarkSource] = {
    "gpqa_diamond": BenchmarkSource(
        "gpqa_diamond", "Idavidrein/gpqa", "gpqa_diamond", "train", GPQA_COLUMNS, gpqa_question
    ),
    "gpqa_main": BenchmarkSource("gpqa_main", "Idavidrein/gpqa", "gpqa_main", "train", GPQA_COLUMNS, gpqa_question),
    "mmlu": BenchmarkSource("mmlu", "cais/mmlu", "all", "test", MMLU_COLUMNS, mmlu_question),
}

LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded: unknown name, missing file, missing columns, bad row."""


def benchmark_source(name: str) -> BenchmarkSource:
    if name not in BENCHMARKS:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}")
    return BENCHMARKS[name]


def local_files(data_dir: Path, name: str) -> list[Path]:
    """`data_dir/<name>.{jsonl,json,parquet}` or every such file under `data_dir/<name>/`."""
    candidates = [data_dir / f"{name}{suffix}" for suffix in LOCAL_SUFFIXES]
    found = [path for path in candidates if path.is_file()]
    folder = data_dir / name
    if folder.is_dir():
        found += sorted(p for p in folder.iterdir() if p.suffix in LOCAL_SUFFIXES and p.is_file())
    if not found:
        raise BenchmarkError(
            f"benchmark {name!r}: no {name}.jsonl, {name}.parquet or {name}/*.jsonl|parquet under {data_dir}"
        )
    if len({LOCAL_SUFFIXES[p.suffix] for p in found}) > 1:
        raise BenchmarkError(f"benchmark {name!r}: mixed JSONL and Parquet files under {data_dir}")
    return found


def _load_rows(source: BenchmarkSource, data_dir: Path | None) -> tuple[Any, str]:
    import datasets

    datasets.disable_progress_bars()
    if data_dir is not None:
        files = local_files(data_dir, source.name)
        try:
            rows = datasets.load_dataset(
                LOCAL_SUFFIXES[files[0].suffix], data_files=[str(f) for f in files], split="train"
            )
        except Exception as error:  # datasets raises many types for unreadable files
            raise BenchmarkError(
                f"benchmark {source.name!r}: cannot read {', '.join(map(str, files))}: {error}"
            ) from error
        return rows, ", ".join(map(str, files))
    token = os.environ.get("HF_TOKEN") or None
    rows = datasets.load_dataset(source.hub_path, source.hub_config, split=source.split, token=token)
    return rows, f"hf://{source.hub_path}/{source.hub_config}:{source.split}"


def load_benchmark(
    name: str, data_dir: str | Path | None = None, seed: int = 0, limit: int | None = None
) -> list[Question]:
    """Questions of one benchmark, in dataset order, at most `limit` of them."""
    source = benchmark_source(name)
    rows, origin = _load_rows(source, Path(data_dir) if data_dir is not None else None)
    return questions_from_rows(source, rows, origin, seed, limit)


def questions_from_rows(
    source: BenchmarkSource, rows: Any, origin: str, seed: int = 0, limit: int | None = None
) -> list[Question]:
    columns: Sequence[str] = list(rows.column_names)
    missing = [column for column in source.columns if column not in columns]
    if missing:
        raise BenchmarkError(
            f"benchmark {source.name!r} from {origin}: missing column(s) {', '.join(missing)}; "
            f"found {', '.join(columns) or 'none'}"
        )
    count = len(rows) if limit is None else min(limit, len(rows))
    questions = []
    for index in range(count):
        row = rows[index]
        try:
            questions.append(source.convert(source.name, row, index, seed))
        except (KeyError, TypeError, ValueError) as error:
            raise BenchmarkError(f"benchmark {source.name!r} from {origin}, row {index}: {error}") from error
    if not questions:
        raise BenchmarkError(f"benchmark {source.name!r} from {origin}: no questions")
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise BenchmarkError(f"benchmark {source.name!r} from {origin}: question ids are not unique")
    return questions
