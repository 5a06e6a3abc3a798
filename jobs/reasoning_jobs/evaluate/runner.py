"""Runs the evaluation: every question × model × reasoning mode through the client, scored and recorded."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from reasoning_operator.api import EvaluationStageConfig
from reasoning_operator.api.contract import reasoning_system_prompt

from .benchmarks import Question, load_benchmark
from .extraction import extract_answer
from .prompts import format_question
from .retrying import RequestError
from .statistics import CellScore, complies, score_cell, thinking_tokens
from .transport import make_client


@dataclass
class Record:
    """One question's answer from one model in one mode: everything results.json keeps."""

    benchmark: str
    question_id: str
    model: str
    mode: str
    correct_letter: str
    choices: list[str]
    response: str | None
    extracted: str | None
    rule: str | None
    is_correct: bool
    compliant: bool
    thinking_tokens: float
    num_output_tokens: int | None
    finish_reason: str | None
    seconds: float
    attempts: int
    error: str | None = None


@dataclass
class EvaluationRun:
    records: list[Record] = field(default_factory=list)
    scores: list[CellScore] = field(default_factory=list)
    questions: dict[str, int] = field(default_factory=dict)


def sampling_parameters(config: EvaluationStageConfig) -> dict[str, Any]:
    spec = config.evaluation
    return {"max_tokens": spec.max_tokens, "temperature": spec.temperature, "top_p": spec.top_p}


def to_record(question: Question, model: str, mode: str, completion: Any, error: str | None) -> Record:
    if completion is None:
        return Record(
            question.benchmark, question.id, model, mode, question.correct, list(question.choices),
            None, None, None, False, False, 0.0, None, None, 0.0, 0, error,
        )  # fmt: skip
    found = extract_answer(completion.text, n_choices=len(question.choices))
    return Record(
        benchmark=question.benchmark,
        question_id=question.id,
        model=model,
        mode=mode,
        correct_letter=question.correct,
        choices=list(question.choices),
        response=completion.text,
        extracted=found.letter,
        rule=found.rule,
        is_correct=found.letter == question.correct,
        compliant=complies(completion.text, mode),
        thinking_tokens=thinking_tokens(completion.text, completion.num_output_tokens),
        num_output_tokens=completion.num_output_tokens,
        finish_reason=completion.finish_reason,
        seconds=completion.seconds,
        attempts=completion.attempts,
    )


def score(records: Sequence[Record]) -> list[CellScore]:
    cells: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        cells[(record.benchmark, record.model, record.mode)].append(record)
    scores = []
    for (benchmark, model, mode), cell in cells.items():
        answered = [r for r in cell if r.response is not None]
        scores.append(
            score_cell(
                benchmark,
                model,
                mode,
                correct=[r.is_correct for r in cell],
                answered=[r.extracted is not None for r in cell],
                errors=sum(r.error is not None for r in cell),
                thinking=[r.thinking_tokens for r in answered],
                compliant=[r.compliant for r in answered],
            )
        )
    return scores


async def run_requests(
    config: EvaluationStageConfig,
    benchmarks: dict[str, list[Question]],
    progress: bool = True,
    ready_timeout: float = 300.0,
) -> list[Record]:
    """A pool of `concurrency` workers drains one queue of (question, model, mode) jobs."""
    from tqdm.auto import tqdm

    spec = config.evaluation
    sampling = sampling_parameters(config)
    jobs: asyncio.Queue[tuple[int, Question, str, str]] = asyncio.Queue()
    order = 0
    for questions in benchmarks.values():
        for model in config.models:
            for mode in spec.modes:
                for question in questions:
                    jobs.put_nowait((order, question, model, mode))
                    order += 1
    results: list[Record | None] = [None] * order
    bar = tqdm(total=order, desc="evaluate", unit="q", disable=not progress, smoothing=0.05)
    async with make_client(config.server_url, spec.concurrency) as client:
        await client.wait_ready(list(config.models), timeout=ready_timeout)

        async def worker() -> None:
            while True:
                try:
                    index, question, model, mode = jobs.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    completion = await client.generate(
                        model, format_question(question), reasoning_system_prompt(mode), sampling
                    )
                    results[index] = to_record(question, model, mode, completion, None)
                except RequestError as error:
                    results[index] = to_record(question, model, mode, None, str(error))
                bar.update(1)

        await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, max(order, 1)))))
    bar.close()
    return [record for record in results if record is not None]


def evaluate(config: EvaluationStageConfig, progress: bool = True, ready_timeout: float = 300.0) -> EvaluationRun:
    spec = config.evaluation
    benchmarks: dict[str, list[Question]] = {
        name: load_benchmark(name, spec.data_dir, seed=spec.seed, limit=spec.sample_limit) for name in spec.benchmarks
    }
    records = asyncio.run(run_requests(config, benchmarks, progress=progress, ready_timeout=ready_timeout))
    return EvaluationRun(records, score(records), {name: len(q) for name, q in benchmarks.items()})


def records_as_dicts(records: Sequence[Record]) -> list[dict[str, Any]]:
    return [asdict(record) for record in records]
