"""Verifiable multi-step problems in the Llama-Nemotron Post-Training layout, for teaching a real small model
(SmolLM2-135M-Instruct) to reason, and held-out questions that measure whether it did.

Four families, each a file ``SFT/math/math_v1.1-<family>.jsonl`` (the recipe's default filter selects them):
multi-digit arithmetic (``a * b + c``), chains of operations, unit conversions and small word problems. A
reasoning-on sample's think block really computes the answer, one operation a line, every multiplication split
into tens and units (the steps a 135M model can do reliably); it ends in ``\\boxed{}``. A reasoning-off sample
answers directly. Half the samples are free-form (``\\boxed{1692}``), half are worded exactly as the evaluation
job asks multiple-choice questions (``\\boxed{C}`` then ``Answer: C``).

In every family a share of the samples carries exactly one defect that one curation rule must drop (round
robin, so each rule drops some in each family); ``manifest.json`` counts them.

The held-out sets come from the same generator with other seeds and cannot overlap the training data: a
question whose digest falls in one tenth of the space is only ever an evaluation question. They are written as
``gpqa_diamond.jsonl`` (GPQA shape: correct answer first, three plausible distractors: carry slips of ±10/±100
and a skipped or reversed last step), ``mmlu.jsonl`` (the same questions in MMLU shape), ``gpqa_main.jsonl``
(a harder split: longer chains and larger operands, never trained on) and ``freeform.jsonl`` /
``freeform_hard.jsonl`` (question and integer answer, for scoring ``\\boxed{}`` answers directly).

    python -m reasoning_jobs.datasets.reasoning_problems train --out DIR --samples N --seed S
    python -m reasoning_jobs.datasets.reasoning_problems eval --out DIR --questions N --seed S
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning_operator.api.contract import reasoning_system_prompt

from .nemotron_synthetic import DEFECT_RULES, FOREIGN, GENERATORS, LICENSES, NANO_LISTS, NOT_NANO_LISTS

FAMILIES = ("arithmetic", "chains", "units", "word")
#: one in HOLDOUT_MODULUS question digests is reserved for evaluation (never in training data)
HOLDOUT_MODULUS = 10
DEFECTS = tuple(DEFECT_RULES)
NAMES = ["Alice", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
ITEMS = ["pencils", "apples", "stickers", "marbles", "cards", "books", "shells", "cookies"]


@dataclass(frozen=True)
class Worked:
    """A problem with its computed solution: the question, one line per step, the integer answer and three
    wrong answers a careless solver could reach."""

    family: str
    question: str
    steps: tuple[str, ...]
    answer: int
    distractors: tuple[int, int, int]


# --- step-by-step arithmetic ------------------------------------------------------------------------------------


def small_product(a: int, d: int) -> list[str]:
    """a * d for a one-digit d, a split into tens and units: the lines that compute it."""
    if a < 10:
        return [f"{a} * {d} = {a * d}"]
    tens, units = a - a % 10, a % 10
    if units == 0:
        return [f"{a} * {d} = {tens // 10} * {d} * 10 = {tens // 10 * d} * 10 = {a * d}"]
    return [f"{a} * {d} = {tens} * {d} + {units} * {d} = {tens * d} + {units * d} = {a * d}"]


def product(a: int, b: int) -> list[str]:
    """a * b, b split into tens and units, each partial product computed by `small_product`."""
    if b < 10:
        return small_product(a, b)
    tens, units = b // 10, b % 10
    lines = [f"{a} * {b} = {a} * {tens * 10} + {a} * {units}" if units else f"{a} * {b} = {a} * {tens} * 10"]
    if tens == 1:
        lines.append(f"{a} * 10 = {a * 10}")
    else:
        lines += small_product(a, tens)
        lines.append(f"{a} * {tens * 10} = {a * tens} * 10 = {a * tens * 10}")
    if units:
        lines += small_product(a, units)
        lines.append(f"{a * tens * 10} + {a * units} = {a * b}")
    return lines


def _apply(value: int, op: str, operand: int) -> tuple[int, list[str]]:
    if op == "+":
        return value + operand, [f"{value} + {operand} = {value + operand}"]
    if op == "-":
        return value - operand, [f"{value} - {operand} = {value - operand}"]
    return value * operand, product(value, operand)


def _distractors(rng: random.Random, answer: int, slips: list[int]) -> tuple[int, int, int]:
    """Carry slips (±10, ±100, ±20) and the caller's wrong-procedure results, distinct, positive, not the answer."""
    pool = [s for s in slips if s != answer and s > 0]
    rng.shuffle(pool)
    chosen: list[int] = pool[:1]  # one wrong procedure, the rest carry slips
    carries = [answer + d for d in (10, -10, 100, -100, 20, -20, 110, -110)]
    rng.shuffle(carries)
    for candidate in carries + pool[1:]:
        if len(chosen) == 3:
            break
        if candidate != answer and candidate > 0 and candidate not in chosen:
            chosen.append(candidate)
    while len(chosen) < 3:  # tiny answers: fall back to small offsets
        candidate = answer + rng.randint(1, 9) * rng.choice([-1, 1])
        if candidate != answer and candidate > 0 and candidate not in chosen:
            chosen.append(candidate)
    return chosen[0], chosen[1], chosen[2]


# --- families ---------------------------------------------------------------------------------------------------


def arithmetic(rng: random.Random, hard: bool = False) -> Worked:
    """a * b + c (the minimal script's problem); hard: a * b + c * d - e."""
    a, b, c = rng.randint(12, 99), rng.randint(12, 99), rng.randint(100, 999)
    steps = product(a, b)
    if not hard:
        total = a * b + c
        steps.append(f"{a * b} + {c} = {total}")
        slips = [a * b, a * b - c]
        return Worked("arithmetic", f"What is {a} * {b} + {c}?", tuple(steps), total, _distractors(rng, total, slips))
    d, e = rng.randint(3, 9), rng.randint(100, 999)
    steps += product(c, d)
    steps.append(f"{a * b} + {c * d} = {a * b + c * d}")
    total = a * b + c * d - e
    steps.append(f"{a * b + c * d} - {e} = {total}")
    slips = [a * b + c * d, a * b + c * d + e, a * b + c - e]
    question = f"What is {a} * {b} + {c} * {d} - {e}?"
    return Worked("arithmetic", question, tuple(steps), total, _distractors(rng, total, slips))


_OP_WORDS = {"+": "add {n}", "-": "subtract {n}", "*": "multiply by {n}"}


def chains(rng: random.Random, hard: bool = False) -> Worked:
    """Start with n, then 3 (hard: 5) operations in order; kept positive."""
    value = start = rng.randint(10, 99)
    steps: list[str] = []
    words: list[str] = []
    previous = value
    for position in range(5 if hard else 3):
        op = rng.choice(["+", "-", "*"]) if position else rng.choice(["+", "*"])
        operand = rng.randint(2, 9) if op == "*" else rng.randint(11, 99 if value < 300 else 499)
        if op == "-" and operand >= value:
            op = "+"
        if op == "*" and value > 999:
            op = "-"
        previous = value
        value, lines = _apply(value, op, operand)
        steps += lines
        words.append(_OP_WORDS[op].format(n=operand))
    question = f"Start with {start}, then {', then '.join(words)}. What is the result?"
    slips = [previous]
    return Worked("chains", question, tuple(steps), value, _distractors(rng, value, slips))


def units(rng: random.Random, hard: bool = False) -> Worked:
    """Conversions into the smaller unit (hours and minutes, km and m, dollars and cents, kg and g); hard:
    a rate times a time first."""
    if hard:
        speed, hours, extra = rng.randint(12, 95), rng.randint(2, 9), rng.randint(11, 999)
        km = speed * hours
        steps = [*product(speed, hours), f"{km} km = {km} * 1000 m = {km * 1000} m"]
        total = km * 1000 + extra
        steps.append(f"{km * 1000} + {extra} = {total}")
        question = (
            f"A cyclist rides at {speed} km per hour for {hours} hours and then walks {extra} m. "
            "How many meters is that in total?"
        )
        return Worked("units", question, tuple(steps), total, _distractors(rng, total, [km * 1000, km + extra]))
    kind = rng.choice(["time", "length", "money", "mass"])
    if kind == "time":
        big, small = rng.randint(2, 23), rng.randint(1, 59)
        question = f"How many minutes are {big} hours and {small} minutes?"
        steps = [f"1 hour = 60 minutes, so {big} hours = {big} * 60 minutes", *product(big, 60)]
        factor, unit = 60, "minutes"
    elif kind == "length":
        big, small = rng.randint(2, 49), rng.randint(1, 999)
        question = f"How many meters are {big} km and {small} m?"
        steps = [f"1 km = 1000 m, so {big} km = {big} * 1000 m = {big * 1000} m"]
        factor, unit = 1000, "m"
    elif kind == "money":
        big, small = rng.randint(2, 99), rng.randint(1, 99)
        question = f"How many cents are {big} dollars and {small} cents?"
        steps = [f"1 dollar = 100 cents, so {big} dollars = {big} * 100 cents = {big * 100} cents"]
        factor, unit = 100, "cents"
    else:
        big, small = rng.randint(2, 49), rng.randint(1, 999)
        question = f"How many grams are {big} kg and {small} g?"
        steps = [f"1 kg = 1000 g, so {big} kg = {big} * 1000 g = {big * 1000} g"]
        factor, unit = 1000, "g"
    total = big * factor + small
    steps.append(f"{big * factor} + {small} = {total} {unit}")
    return Worked("units", question, tuple(steps), total, _distractors(rng, total, [big * factor, big + small]))


def word(rng: random.Random, hard: bool = False) -> Worked:
    """Packs bought, some given away (hard: then shared equally among friends)."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    packs, per = rng.randint(3, 29), rng.randint(6, 48)
    have = packs * per
    given = rng.randint(2, have - 1)
    left = have - given
    steps = [f"{name} buys {packs} packs of {per} {item}: {packs} * {per}", *product(packs, per)]
    steps.append(f"After giving away {given}: {have} - {given} = {left}")
    question = f"{name} buys {packs} packs of {per} {item} each and gives away {given} {item}."
    if not hard:
        question += f" How many {item} does {name} have left?"
        return Worked("word", question, tuple(steps), left, _distractors(rng, left, [have, have + given]))
    extra_packs = rng.randint(2, 9)
    more = extra_packs * per
    steps += [f"Then {extra_packs} more packs: {extra_packs} * {per}", *product(extra_packs, per)]
    total = left + more
    steps.append(f"{left} + {more} = {total}")
    question += f" Then {name} buys {extra_packs} more packs. How many {item} does {name} have now?"
    return Worked("word", question, tuple(steps), total, _distractors(rng, total, [left, have + more]))


FAMILY_MAKERS: dict[str, Callable[[random.Random, bool], Worked]] = {
    "arithmetic": arithmetic,
    "chains": chains,
    "units": units,
    "word": word,
}


def is_holdout(question: str) -> bool:
    """Whether a question is reserved for evaluation (a digest, so training and evaluation never coordinate)."""
    return int(hashlib.sha256(question.encode("utf-8")).hexdigest()[:8], 16) % HOLDOUT_MODULUS == 0


def draw(rng: random.Random, family: str, holdout: bool, hard: bool = False) -> Worked:
    """A problem of `family` on the requested side of the hold-out split."""
    while True:
        worked = FAMILY_MAKERS[family](rng, hard)
        if is_holdout(worked.question) == holdout:
            return worked


# --- records ----------------------------------------------------------------------------------------------------


def multiple_choice(rng: random.Random, worked: Worked) -> tuple[list[str], str]:
    """The four options (shuffled) and the correct letter."""
    options = [str(worked.answer), *map(str, worked.distractors)]
    rng.shuffle(options)
    return options, "ABCD"[options.index(str(worked.answer))]


def _mc_prompt(worked: Worked, options: list[str]) -> str:
    from reasoning_jobs.evaluate.benchmarks import Question
    from reasoning_jobs.evaluate.prompts import format_question

    return format_question(Question("synthetic", "train", worked.question, tuple(options), "A"))


def outputs(worked: Worked, letter: str | None, options: list[str] | None) -> tuple[str, str]:
    """(reasoning-on output, reasoning-off output) for a free-form (`letter` None) or multiple-choice sample."""
    steps = list(worked.steps)
    if letter is None:
        final = f"The answer is \\boxed{{{worked.answer}}}."
    else:
        assert options is not None
        steps.append(f"The result {worked.answer} is option {letter}.")
        final = f"The answer is \\boxed{{{letter}}}.\nAnswer: {letter}"
    return "<think>\n" + "\n".join(steps) + "\n</think>\n\n" + final, final


def _long_text(chars: int) -> str:
    line = "Let me check every step of the calculation once more."
    return "\n".join([line] * (chars // (len(line) + 1) + 1))


def make_record(rng: random.Random, worked: Worked, defect: str, long_chars: int) -> dict[str, Any]:
    """One schema-exact record, carrying `defect` (or "good")."""
    mc = rng.random() < 0.5
    options, letter = multiple_choice(rng, worked) if mc else (None, None)
    prompt = _mc_prompt(worked, options) if options is not None else worked.question
    on, off = outputs(worked, letter, options)
    reasoning = rng.choice(["on", "off"])
    if defect in ("empty_think", "unclosed_think", "on_without_think", "completion_too_long"):
        reasoning = "on"
    elif defect == "think_in_off":
        reasoning = "off"
    output = on if reasoning == "on" else off
    final = off
    body = "\n".join(worked.steps)
    if defect == "non_english":
        question, step, lead = FOREIGN[rng.choice(sorted(FOREIGN))]
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        prompt = question.format(a=a, b=b)
        answer = f"{lead} \\boxed{{{a + b}}}."
        output = f"<think>\n{step.format(a=a, b=b, c=a + b)}\n</think>\n\n{answer}" if reasoning == "on" else answer
    elif defect == "math_without_boxed":
        plain = f"The answer is {worked.answer}."
        output = f"<think>\n{body}\n</think>\n\n{plain}" if reasoning == "on" else plain
    elif defect == "empty_think":
        output = "<think>\n  \n</think>\n\n" + final
    elif defect == "unclosed_think":
        output = f"<think>\n{body}\n\n{final}"
    elif defect == "on_without_think":
        output = f"{body}\n\n{final}"
    elif defect == "think_in_off":
        output = on
    elif defect == "prompt_too_long":
        prompt = "Here are my notes:\n" + _long_text(long_chars) + "\n" + prompt
    elif defect == "completion_too_long":
        output = f"<think>\n{body}\n{_long_text(long_chars)}\n</think>\n\n{final}"
    used = rng.choice(NOT_NANO_LISTS if defect == "not_used_for_nano" else NANO_LISTS)
    return {
        "input": [{"role": "user", "content": prompt}],
        "output": output,
        "reasoning": reasoning,
        "system_prompt": reasoning_system_prompt(reasoning),
        "category": "math",
        "license": rng.choice(LICENSES),
        "generator": rng.choice(GENERATORS),
        "used_in_training": list(used),
        "version": "v1.1",
    }


def family_path(family: str) -> str:
    return f"SFT/math/math_v1.1-{family}.jsonl"


def generate(
    out: Path, samples: int, seed: int = 0, bad_fraction: float = 0.1, long_chars: int = 6000
) -> dict[str, Any]:
    """`samples` records spread evenly over the families (+ `out/manifest.json`); returns the manifest."""
    if samples < len(FAMILIES):
        raise ValueError(f"samples must be >= {len(FAMILIES)}, got {samples}")
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError(f"bad_fraction must be within [0, 1], got {bad_fraction}")
    rng = random.Random(seed)
    files: dict[str, Any] = {}
    for index, family in enumerate(FAMILIES):
        count = samples // len(FAMILIES) + (1 if index < samples % len(FAMILIES) else 0)
        kinds: Counter[str] = Counter()
        reasoning: Counter[str] = Counter()
        target = out / family_path(family)
        target.parent.mkdir(parents=True, exist_ok=True)
        turn = 0
        with target.open("w", encoding="utf-8") as handle:
            for _ in range(count):
                defect = "good"
                if rng.random() < bad_fraction:
                    defect, turn = DEFECTS[turn % len(DEFECTS)], turn + 1
                record = make_record(rng, draw(rng, family, holdout=False), defect, long_chars)
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                kinds[defect] += 1
                if defect == "good":
                    reasoning[record["reasoning"]] += 1
        files[family_path(family)] = {"records": count, "kinds": dict(kinds), "good_reasoning": dict(reasoning)}
    manifest = {"samples": samples, "seed": seed, "bad_fraction": bad_fraction, "defect_rules": DEFECT_RULES}
    manifest["files"] = files
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def _held_out(rng: random.Random, questions: int, hard: bool) -> list[Worked]:
    seen: set[str] = set()
    drawn: list[Worked] = []
    while len(drawn) < questions:
        worked = draw(rng, FAMILIES[len(drawn) % len(FAMILIES)], holdout=True, hard=hard)
        if worked.question not in seen:
            seen.add(worked.question)
            drawn.append(worked)
    return drawn


def _gpqa_row(name: str, index: int, worked: Worked) -> dict[str, Any]:
    return {
        "Record ID": f"{name}-{worked.family}-{index}",
        "Question": worked.question,
        "Correct Answer": str(worked.answer),
        "Incorrect Answer 1": str(worked.distractors[0]),
        "Incorrect Answer 2": str(worked.distractors[1]),
        "Incorrect Answer 3": str(worked.distractors[2]),
        "High-level domain": worked.family,
    }


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def write_eval(out: Path, questions: int = 200, seed: int = 1000) -> dict[str, int]:
    """The held-out sets (see the module docstring); returns each file's question count."""
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    main = _held_out(rng, questions, hard=False)
    hard = _held_out(random.Random(seed + 1), questions, hard=True)
    _write_jsonl(out / "gpqa_diamond.jsonl", [_gpqa_row("held-out", i, w) for i, w in enumerate(main)])
    _write_jsonl(out / "gpqa_main.jsonl", [_gpqa_row("hard", i, w) for i, w in enumerate(hard)])
    mmlu: list[dict[str, Any]] = []
    for i, worked in enumerate(main):
        options, letter = multiple_choice(rng, worked)
        mmlu.append(
            {"id": f"mmlu-{worked.family}-{i}", "question": worked.question, "subject": worked.family}
            | {"choices": options, "answer": "ABCD".index(letter)}
        )
    _write_jsonl(out / "mmlu.jsonl", mmlu)
    for name, split in (("freeform", main), ("freeform_hard", hard)):
        rows = [
            {"id": f"{name}-{i}", "question": w.question, "answer": w.answer, "family": w.family}
            for i, w in enumerate(split)
        ]
        _write_jsonl(out / f"{name}.jsonl", rows)
    return {"gpqa_diamond": len(main), "gpqa_main": len(hard), "mmlu": len(mmlu), "freeform": len(main)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    train = sub.add_parser("train", help="The training dataset (SFT/math/…, manifest.json).")
    train.add_argument("--out", type=Path, required=True)
    train.add_argument("--samples", type=int, default=20_000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--bad-fraction", type=float, default=0.1)
    held = sub.add_parser("eval", help="The held-out multiple-choice and free-form sets.")
    held.add_argument("--out", type=Path, required=True)
    held.add_argument("--questions", type=int, default=200)
    held.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.what == "train":
        manifest = generate(args.out, args.samples, args.seed, args.bad_fraction)
        print(json.dumps({p: f["records"] for p, f in manifest["files"].items()}, indent=2))
    else:
        print(json.dumps(write_eval(args.out, args.questions, args.seed), indent=2))


if __name__ == "__main__":
    main()
