"""Batched greedy evaluation of a base model and its adapters, through the evaluation job's own code path.

The device machine has no Triton server (PyTriton's wheel alone is 55 MB of a 64 MiB carry), so the questions
are asked directly with transformers, batched. Everything but the transport is the evaluation job's: questions
load through `benchmarks.questions_from_rows` (GPQA choices shuffled per question id), prompts are
`prompts.format_question` under the serving stage's chat template and reasoning system prompt, answers go
through `runner.to_record` (extraction, compliance, thinking tokens) and cells through `runner.score` (Wilson
intervals). Decoding is what the serving stage does: greedy, stop at the tokenizer's end of turn, fp32 weights.

Free-form questions (no eval-job counterpart) are scored from the last `\\boxed{}` after the think block.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning_jobs.evaluate.benchmarks import BENCHMARKS, Question, questions_from_rows
from reasoning_jobs.evaluate.extraction import final_answer_region
from reasoning_jobs.evaluate.prompts import format_question
from reasoning_jobs.evaluate.runner import Record, score, to_record
from reasoning_jobs.evaluate.statistics import complies, score_cell, thinking_tokens
from reasoning_operator.api.contract import reasoning_system_prompt


class Rows:
    """The slice of `datasets.Dataset` that `questions_from_rows` reads, over a JSONL file."""

    def __init__(self, path: Path) -> None:
        self.rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        self.column_names = list(self.rows[0]) if self.rows else []

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


def load_questions(data_dir: Path, benchmark: str, limit: int | None = None, seed: int = 0) -> list[Question]:
    path = data_dir / f"{benchmark}.jsonl"
    return questions_from_rows(BENCHMARKS[benchmark], Rows(path), str(path), seed, limit)


@dataclass(frozen=True)
class Completion:
    """What the evaluation client gets back from the server (runner.to_record reads these fields)."""

    text: str
    num_output_tokens: int
    finish_reason: str
    seconds: float
    attempts: int = 1


class Generator:
    """One base model (fp32, as the serving stage loads it) with any number of named adapters."""

    def __init__(self, model_path: str, adapters: dict[str, str], device: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:  # only for batching here; padded positions are masked
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        if adapters:
            from peft import PeftModel

            # PEFT adapter names are module names (no dots): a0, a1, … stand for the caller's names
            self.slots = {name: f"a{i}" for i, name in enumerate(adapters)}
            names = list(adapters)
            model = PeftModel.from_pretrained(model, adapters[names[0]], adapter_name=self.slots[names[0]])
            for name in names[1:]:
                model.load_adapter(adapters[name], adapter_name=self.slots[name])
        self.model: Any = model.to(device).eval()
        self.device = device
        self.stop = [int(self.tokenizer.eos_token_id)]

    def prompt(self, user: str, system: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        text: str = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text

    def generate(self, adapter: str | None, prompts: list[str], max_tokens: int, batch: int) -> list[Completion]:
        from contextlib import nullcontext

        out: list[Completion] = []
        if adapter is None:
            context: Any = self.model.disable_adapter() if hasattr(self.model, "disable_adapter") else nullcontext()
        else:
            self.model.set_adapter(self.slots[adapter])
            context = nullcontext()
        with context, self.torch.inference_mode():
            for start in range(0, len(prompts), batch):
                chunk = prompts[start : start + batch]
                encoded = self.tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                encoded = {k: v.to(self.device) for k, v in encoded.items()}
                began = time.monotonic()
                ids = self.model.generate(
                    **encoded,
                    max_new_tokens=max_tokens,
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    eos_token_id=self.stop,
                    pad_token_id=self.stop[0],
                )
                seconds = (time.monotonic() - began) / len(chunk)
                width = encoded["input_ids"].shape[1]
                for row in ids[:, width:].tolist():
                    stopped = next((i for i, t in enumerate(row) if t in self.stop), None)
                    content = row if stopped is None else row[:stopped]
                    text = self.tokenizer.decode(content, skip_special_tokens=False)
                    reason = "stop" if stopped is not None else "length"
                    out.append(Completion(text, len(content), reason, seconds))
        return out


_BOXED = re.compile(r"\\boxed\s*\{\s*(-?[\d,]+)\s*\}")


def boxed_integer(text: str) -> int | None:
    """The last `\\boxed{N}` of the final answer (nothing when the think block was never closed)."""
    region, _closed = final_answer_region(text)
    found = _BOXED.findall(region)
    return int(found[-1].replace(",", "")) if found else None


def evaluate(
    generator: Generator,
    models: dict[str, str | None],
    data_dir: Path,
    benchmarks: list[str],
    modes: list[str],
    max_tokens: int,
    limit: int | None = None,
    batch: int = 512,
    freeform: list[str] | None = None,
) -> dict[str, Any]:
    """Every (benchmark, model, mode) cell, scored as the evaluation job scores it; plus free-form cells."""
    questions = {name: load_questions(data_dir, name, limit) for name in benchmarks}
    records: list[Record] = []
    free_scores: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for model, adapter in models.items():
        began = time.monotonic()
        jobs: list[tuple[Any, str, str]] = []
        for qs in questions.values():
            jobs += [(q, mode, format_question(q)) for mode in modes for q in qs]
        free_rows: list[tuple[str, dict[str, Any], str]] = []
        for name in freeform or []:
            rows = Rows(data_dir / f"{name}.jsonl").rows[:limit]
            free_rows += [(name, row, mode) for mode in modes for row in rows]
        prompts = [generator.prompt(user, reasoning_system_prompt(mode)) for _q, mode, user in jobs]
        prompts += [generator.prompt(row["question"], reasoning_system_prompt(mode)) for _n, row, mode in free_rows]
        # a batch decodes until its longest answer ends: reasoning-off prompts batched apart finish in a few
        # dozen steps instead of waiting for thinking answers
        mode_of = [mode for _q, mode, _u in jobs] + [mode for _n, _r, mode in free_rows]
        order = sorted(range(len(prompts)), key=lambda i: mode_of[i] == "on")
        ordered = generator.generate(adapter, [prompts[i] for i in order], max_tokens, batch)
        completions: list[Completion] = [ordered[0]] * len(prompts) if prompts else []
        for position, index in enumerate(order):
            completions[index] = ordered[position]
        for (question, mode, _user), completion in zip(jobs, completions[: len(jobs)], strict=True):
            records.append(to_record(question, model, mode, completion, None))
        cells: dict[tuple[str, str], list[tuple[dict[str, Any], Completion]]] = {}
        for (name, row, mode), completion in zip(free_rows, completions[len(jobs) :], strict=True):
            cells.setdefault((name, mode), []).append((row, completion))
        for (name, mode), pairs in cells.items():
            got = [boxed_integer(c.text) for _row, c in pairs]
            cell = score_cell(
                name,
                model,
                mode,
                correct=[g == row["answer"] for g, (row, _c) in zip(got, pairs, strict=True)],
                answered=[g is not None for g in got],
                errors=0,
                thinking=[thinking_tokens(c.text, c.num_output_tokens) for _row, c in pairs],
                compliant=[complies(c.text, mode) for _row, c in pairs],
            )
            free_scores.append(cell.__dict__ | {"examples": [c.text for _row, c in pairs[:2]]})
        seconds[model] = round(time.monotonic() - began, 1)
    scores = [s.__dict__ for s in score(records)]
    examples = {}
    for record in records:
        examples.setdefault(f"{record.benchmark}/{record.model}/{record.mode}", record.response)
    # each multiple-choice answer as extracted, to compare question by question with the Triton-served run
    answers = {f"{r.benchmark}/{r.model}/{r.mode}/{r.question_id}": r.extracted for r in records}
    return {"scores": scores + free_scores, "seconds": seconds, "examples": examples, "answers": answers}
