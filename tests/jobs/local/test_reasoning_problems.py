"""The verifiable problem generator: every think-trace step is arithmetic that holds, the held-out sets never
overlap the training data, every curation rule has samples to drop in every family, and the multiple-choice
rows load through the evaluation job's loaders with the right letter."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from reasoning_jobs.curate import records as rules
from reasoning_jobs.datasets.reasoning_problems import (
    FAMILIES,
    FAMILY_MAKERS,
    family_path,
    generate,
    is_holdout,
    write_eval,
)
from reasoning_jobs.evaluate.benchmarks import BENCHMARKS, questions_from_rows


def _check_line(line: str) -> None:
    """Every `expr = expr = …` on a line evaluates to one value (units and words around it ignored)."""
    text = line.split(":", 1)[-1] if ":" in line else line
    text = text.split(", so ", 1)[-1]
    # a quantity in the larger unit (`21 dollars = 21 * 100 cents`) is a conversion, not an equality of numbers
    parts = [p for p in text.split("=") if not re.search(r"\b(km|kg|hours|dollars)\b", p)]
    parts = [re.sub(r"\b(m|g|cents|minutes)\b", "", p).strip() for p in parts]
    if len(parts) < 2:
        return
    values = {eval(p, {"__builtins__": {}}) for p in parts if re.fullmatch(r"[\d\s*+\-]+", p)}
    assert len(values) == 1, line


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_step_computes_and_ends_in_the_answer(family: str, hard: bool) -> None:
    rng = random.Random(7)
    for _ in range(300):
        worked = FAMILY_MAKERS[family](rng, hard)
        for line in worked.steps:
            _check_line(line)
        last = worked.steps[-1].split("=")[-1].split()[0]
        assert int(last) == worked.answer, worked
        assert worked.answer > 0 and worked.answer not in worked.distractors
        assert len(set(worked.distractors)) == 3 and min(worked.distractors) > 0


def test_a_wrong_step_is_caught() -> None:
    with pytest.raises(AssertionError):
        _check_line("47 * 6 = 40 * 6 + 7 * 6 = 240 + 42 = 283")


def test_training_data_has_every_defect_in_every_family_and_no_held_out_question(tmp_path: Path) -> None:
    manifest = generate(tmp_path, samples=1200, seed=3, long_chars=200)
    for family in FAMILIES:
        kinds = manifest["files"][family_path(family)]["kinds"]
        assert set(kinds) == {"good", *manifest["defect_rules"]}, (family, kinds)
        for line in (tmp_path / family_path(family)).read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            question = record["input"][0]["content"].split("\n\n")[1 if "multiple-choice" in line else 0]
            if record["output"].count("\\boxed") and "Here are my notes" not in question:
                assert not is_holdout(question.strip()), question
    # good samples pass every per-sample rule; the think traces really end in the boxed answer
    good = Counter()
    for family in FAMILIES:
        for line in (tmp_path / family_path(family)).read_text(encoding="utf-8").splitlines():
            record = rules.parse_record(line)
            violation = rules.think_violation(record.output, record.reasoning)
            boxed = rules.has_boxed_answer(rules.final_answer(record.output))
            if violation is None and boxed and "Nano" in record.used_in_training and len(record.output) < 2000:
                good[record.reasoning] += 1
    assert good["on"] > 200 and good["off"] > 200


def test_held_out_sets_load_through_the_eval_job_with_the_right_letter(tmp_path: Path) -> None:
    counts = write_eval(tmp_path, questions=40, seed=11)
    assert counts["gpqa_diamond"] == 40

    class Rows(list[dict[str, object]]):
        column_names: list[str]

    for name in ("gpqa_diamond", "gpqa_main", "mmlu"):
        rows = Rows(json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines())
        rows.column_names = list(rows[0])
        questions = questions_from_rows(BENCHMARKS[name], rows, name)
        free = {
            json.loads(line)["question"]: json.loads(line)["answer"]
            for file in ("freeform.jsonl", "freeform_hard.jsonl")
            for line in (tmp_path / file).read_text().splitlines()
        }
        for question in questions:
            assert is_holdout(question.question)
            chosen = question.choices["ABCD".index(question.correct)]
            assert int(chosen) == free[question.question]
    main = {json.loads(line)["Question"] for line in (tmp_path / "gpqa_diamond.jsonl").read_text().splitlines()}
    hard = {json.loads(line)["Question"] for line in (tmp_path / "gpqa_main.jsonl").read_text().splitlines()}
    assert not main & hard
