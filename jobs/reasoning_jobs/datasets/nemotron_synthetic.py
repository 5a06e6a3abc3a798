"""A deterministic stand-in for the Llama-Nemotron Post-Training Dataset (same layout, same record schema).

Good samples are English math (answer in ``\\boxed{}``), chat (some multi-turn) and code problems whose
reasoning-on outputs are always ``<think>\\n…steps…\\n</think>\\n\\nanswer`` and reasoning-off outputs the plain
answer, so a tiny model can learn the reasoning toggle from the curated output. A controllable fraction of
samples carries exactly one defect that one curation rule must drop; ``manifest.json`` (beside ``SFT/``)
counts them per file so tests can check the curation summary against ground truth.

    python -m reasoning_jobs.datasets.nemotron_synthetic --out DIR --samples N --seed S
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasoning_operator.api.contract import reasoning_system_prompt

#: file -> (category, version, share of the samples)
FILES: dict[str, tuple[str, str, float]] = {
    "SFT/math/math_v1.1.jsonl": ("math", "v1.1", 0.40),
    "SFT/chat/chat.jsonl": ("chat", "v1.1", 0.30),
    "SFT/code/code_v1.1.jsonl": ("code", "v1.1", 0.15),
    "SFT/math/math_v1.jsonl": ("math", "v1", 0.15),
}

#: defect kind -> the curation rule (summary `dropped` key) that must drop it
DEFECT_RULES: dict[str, str] = {
    "not_used_for_nano": "used_in_training",
    "non_english": "language",
    "math_without_boxed": "missing_boxed_answer",
    "empty_think": "empty_think",
    "unclosed_think": "malformed_think",
    "think_in_off": "think_in_reasoning_off",
    "on_without_think": "missing_think",
    "prompt_too_long": "prompt_too_long",
    "completion_too_long": "completion_too_long",
}
#: relative frequency of each defect among the bad samples (the long ones are kept rare: they are big)
DEFECT_WEIGHTS: dict[str, float] = {
    "not_used_for_nano": 2.0,
    "non_english": 3.0,
    "math_without_boxed": 1.5,
    "empty_think": 1.0,
    "unclosed_think": 1.0,
    "think_in_off": 1.0,
    "on_without_think": 1.0,
    "prompt_too_long": 0.25,
    "completion_too_long": 0.25,
}
GOOD = "good"

NANO_LISTS = [["Ultra", "Super", "Nano"], ["Nano"], ["Super", "Nano"], ["Ultra", "Nano"]]
NOT_NANO_LISTS = [["Ultra"], ["Ultra", "Super"], ["Super"]]
GENERATORS = ["DeepSeek-R1", "Qwen-2.5-72B-Instruct", "Llama-3.3-70B-Instruct"]
LICENSES = ["cc-by-4.0", "odc-by"]


@dataclass
class Problem:
    """One prompt (all turns) with its reasoning steps and final answer text."""

    turns: list[dict[str, str]]
    steps: list[str]
    answer: str
    boxed: bool = True
    extra_checks: list[str] = field(default_factory=list)


# --- English problems --------------------------------------------------------------------------------------------

NAMES = ["Alice", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hiro", "Ines", "Jonas"]
ITEMS = ["apples", "pencils", "books", "marbles", "stickers", "cookies", "cards", "shells"]
COUNTRIES = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Egypt", "Cairo"),
    ("Brazil", "Brasilia"),
    ("Kenya", "Nairobi"),
    ("Norway", "Oslo"),
]
ACTIVITIES = ["studying for an exam", "running a first marathon", "learning to cook", "keeping a garden healthy"]
TIPS = [
    "Set a clear goal and write it down.",
    "Break the work into small steps and do one step every day.",
    "Rest well and drink enough water.",
    "Ask a friend to check your progress once a week.",
    "Keep notes about what works and what does not.",
]
OPERATIONS = [
    ("add_numbers", "sum", "a + b"),
    ("multiply_numbers", "product", "a * b"),
    ("max_of_two", "larger", "max(a, b)"),
]


def _math_addition(rng: random.Random) -> Problem:
    a, b = rng.randint(10, 999), rng.randint(10, 999)
    return Problem(
        [{"role": "user", "content": f"What is {a} plus {b}? Please explain the answer."}],
        [f"We need to add {a} and {b}.", f"Adding the two numbers gives {a + b}."],
        str(a + b),
    )


def _math_trays(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 19), rng.randint(2, 29)
    return Problem(
        [
            {
                "role": "user",
                "content": f"{name} has {a} boxes with {b} {item} in each box. "
                f"How many {item} does {name} have in total?",
            }
        ],
        [
            f"Each box holds {b} {item}.",
            f"There are {a} boxes, so we multiply {a} by {b}.",
            f"{a} times {b} is {a * b}.",
        ],
        str(a * b),
    )


def _math_equation(rng: random.Random) -> Problem:
    x, a, b = rng.randint(-20, 40), rng.randint(2, 12), rng.randint(1, 60)
    c = a * x + b
    return Problem(
        [{"role": "user", "content": f"Solve the equation {a}x + {b} = {c} for x and show the steps."}],
        [
            f"Subtract {b} from both sides of the equation, which gives {a}x = {c - b}.",
            f"Then divide both sides by {a}.",
            f"This gives x = {x}.",
        ],
        str(x),
    )


def _math_rectangle(rng: random.Random) -> Problem:
    w, h = rng.randint(2, 40), rng.randint(2, 40)
    return Problem(
        [
            {
                "role": "user",
                "content": f"A rectangle is {w} meters wide and {h} meters long. What is its area in square meters?",
            }
        ],
        [
            "The area of a rectangle is its width times its length.",
            f"The width is {w} and the length is {h}.",
            f"So the area is {w} times {h}, which is {w * h}.",
        ],
        str(w * h),
    )


def addition_with_distractors(rng: random.Random) -> tuple[int, int, int, list[int]]:
    """a, b, a + b and three near misses (sorted): the multiple-choice arithmetic of the quickstart."""
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    total = a + b
    wrong: set[int] = set()
    while len(wrong) < 3:
        candidate = total + rng.choice([-10, -2, -1, 1, 2, 10]) * rng.randint(1, 3)
        if candidate != total and candidate > 0:
            wrong.add(candidate)
    return a, b, total, sorted(wrong)


def _math_multiple_choice(rng: random.Random) -> Problem:
    """A multiple-choice question worded exactly as the evaluation job asks them, so a model trained on the
    curated output has seen the benchmark format (the questions themselves are fresh draws)."""
    from reasoning_jobs.evaluate.benchmarks import Question
    from reasoning_jobs.evaluate.prompts import format_question

    a, b, total, wrong = addition_with_distractors(rng)
    choices = [str(total), *map(str, wrong)]
    rng.shuffle(choices)
    letter = "ABCD"[choices.index(str(total))]
    question = Question("synthetic", "mc", f"What is {a} + {b}?", tuple(choices), letter)
    return Problem(
        [{"role": "user", "content": format_question(question)}],
        [f"We need to add {a} and {b}.", f"{a} + {b} = {total}.", f"Option {letter} is {total}."],
        letter,
    )


MATH: list[Callable[[random.Random], Problem]] = [
    _math_addition,
    _math_trays,
    _math_equation,
    _math_rectangle,
    _math_multiple_choice,
]


def _chat_capital(rng: random.Random) -> Problem:
    country, capital = rng.choice(COUNTRIES)
    return Problem(
        [{"role": "user", "content": f"What is the capital city of {country}?"}],
        [
            f"The user is asking about the capital city of {country}.",
            f"I remember that the capital of {country} is {capital}.",
            "I should answer in one clear sentence.",
        ],
        f"The capital city of {country} is {capital}.",
        boxed=False,
    )


def _chat_tips(rng: random.Random) -> Problem:
    activity = rng.choice(ACTIVITIES)
    n = rng.randint(2, 4)
    tips = rng.sample(TIPS, n)
    return Problem(
        [{"role": "user", "content": f"Can you give me {n} short tips for {activity}?"}],
        [
            f"The user wants {n} practical tips for {activity}.",
            "I will pick simple advice that is easy to follow.",
            "A numbered list will make the answer easy to read.",
        ],
        f"Here are {n} tips for {activity}:\n" + "\n".join(f"{i + 1}. {tip}" for i, tip in enumerate(tips)),
        boxed=False,
    )


def _chat_multi_turn(rng: random.Random) -> Problem:
    country, capital = rng.choice(COUNTRIES)
    return Problem(
        [
            {"role": "user", "content": f"Which country has {capital} as its capital?"},
            {"role": "assistant", "content": f"{capital} is the capital of {country}."},
            {"role": "user", "content": "Thanks! Can you tell me that again in one short sentence?"},
        ],
        [
            f"Earlier I said that {capital} is the capital of {country}.",
            "The user now wants the same fact in one short sentence.",
        ],
        f"{capital} is the capital city of {country}.",
        boxed=False,
    )


CHAT: list[Callable[[random.Random], Problem]] = [_chat_capital, _chat_tips, _chat_multi_turn]


def _code_function(rng: random.Random) -> Problem:
    name, what, expr = rng.choice(OPERATIONS)
    return Problem(
        [{"role": "user", "content": f"Write a Python function named {name} that returns the {what} of two numbers."}],
        [
            f"The function needs two parameters and must return the {what} of them.",
            f"In Python the {what} can be computed with the expression {expr}.",
            "I will add a short docstring so the purpose of the function is clear.",
        ],
        f'Here is the function:\n\n```python\ndef {name}(a, b):\n    """Return the {what} of a and b."""\n'
        f"    return {expr}\n```\n\nIt takes two numbers and returns their {what}.",
        boxed=False,
    )


CODE: list[Callable[[random.Random], Problem]] = [_code_function]
BY_CATEGORY = {"math": MATH, "chat": CHAT, "code": CODE}

CHECKS = [
    "Let me double-check the result once more.",
    "I will verify the calculation step by step to be sure.",
    "Checking again, every step above is consistent.",
    "Nothing in the question changes the result, so the answer stands.",
]

# --- Non-English problems (several languages and scripts) ------------------------------------------------------

FOREIGN: dict[str, tuple[str, str, str]] = {
    "fr": (
        "Combien font {a} plus {b} ? Expliquez votre raisonnement, s'il vous plaît.",
        "Il faut additionner {a} et {b}. La somme des deux nombres est égale à {c}.",
        "La réponse est donc",
    ),
    "de": (
        "Wie viel ist {a} plus {b}? Bitte erkläre deinen Lösungsweg ausführlich.",
        "Wir müssen die Zahlen {a} und {b} addieren. Die Summe der beiden Zahlen ist {c}.",
        "Die Antwort lautet also",
    ),
    "es": (
        "¿Cuánto es {a} más {b}? Por favor, explica tu razonamiento con detalle.",
        "Tenemos que sumar {a} y {b}. La suma de los dos números es igual a {c}.",
        "Por lo tanto, la respuesta es",
    ),
    "ru": (
        "Сколько будет {a} плюс {b}? Пожалуйста, объясните ваше рассуждение подробно.",
        "Нужно сложить числа {a} и {b}. Сумма этих двух чисел равна {c}.",
        "Следовательно, ответ равен",
    ),
    "zh": (
        "{a}加{b}等于多少？请详细解释你的推理过程。",
        "我们需要把{a}和{b}这两个数字相加。两个数的和等于{c}。",
        "所以答案是",
    ),
    "ja": (
        "{a}足す{b}はいくつですか？あなたの考え方を詳しく説明してください。",
        "{a}と{b}の二つの数を足す必要があります。二つの数の合計は{c}になります。",
        "したがって、答えは",
    ),
    "ar": (
        "كم يساوي {a} زائد {b}؟ من فضلك اشرح طريقة تفكيرك بالتفصيل.",
        "يجب أن نجمع العددين {a} و {b}. مجموع هذين العددين يساوي {c}.",
        "إذن الإجابة هي",
    ),
}


def _foreign(rng: random.Random, category: str, lang: str) -> Problem:
    question, step, lead = FOREIGN[lang]
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    c = a + b
    answer = f"{lead} \\boxed{{{c}}}." if category == "math" else f"{lead} {c}."
    return Problem(
        [{"role": "user", "content": question.format(a=a, b=b)}],
        [step.format(a=a, b=b, c=c)],
        answer,
        boxed=False,
    )


# --- Assembling records --------------------------------------------------------------------------------------------


def _final_text(problem: Problem) -> str:
    if problem.boxed:
        return f"The answer is \\boxed{{{problem.answer}}}."
    return problem.answer


def _on_output(problem: Problem, final: str) -> str:
    return "<think>\n" + "\n".join(problem.steps + problem.extra_checks) + "\n</think>\n\n" + final


def _off_output(problem: Problem, final: str) -> str:
    return f"{problem.steps[-1]} {final}" if problem.boxed else final


def _long_text(rng: random.Random, chars: int) -> str:
    parts: list[str] = []
    size = 0
    while size < chars:
        part = rng.choice(CHECKS)
        parts.append(part)
        size += len(part) + 1
    return "\n".join(parts)


def make_record(rng: random.Random, category: str, version: str, defect: str, long_chars: int) -> dict[str, Any]:
    """One schema-exact record of `category` carrying `defect` (or `GOOD`)."""
    if defect == "non_english":
        problem = _foreign(rng, category, rng.choice(sorted(FOREIGN)))
    else:
        problem = rng.choice(BY_CATEGORY[category])(rng)
    # Vary reasoning length so the curriculum has something to sort.
    if defect != "non_english":
        problem.extra_checks = rng.sample(CHECKS, rng.randint(0, len(CHECKS)))

    reasoning = rng.choice(["on", "off"])
    if defect in ("empty_think", "unclosed_think", "on_without_think", "completion_too_long"):
        reasoning = "on"
    elif defect == "think_in_off":
        reasoning = "off"

    final = _final_text(problem)
    if defect == "non_english":
        final = problem.answer
    if defect == "math_without_boxed":
        final = f"The answer is {problem.answer}."
    if defect == "prompt_too_long":
        problem.turns[0]["content"] = (
            "Here are my notes:\n" + _long_text(rng, long_chars) + "\n" + problem.turns[0]["content"]
        )
    if defect == "completion_too_long":
        problem.extra_checks = [_long_text(rng, long_chars)]

    if defect == "non_english" and reasoning == "off":
        output = final
    elif reasoning == "on":
        output = _on_output(problem, final)
    else:
        output = _off_output(problem, final)
    if defect == "empty_think":
        output = "<think>\n  \n</think>\n\n" + final
    elif defect == "unclosed_think":
        output = "<think>\n" + "\n".join(problem.steps) + "\n\n" + final
    elif defect == "on_without_think":
        output = "\n".join(problem.steps) + "\n\n" + final
    elif defect == "think_in_off":
        output = "<think>\n" + "\n".join(problem.steps) + "\n</think>\n\n" + final

    used = rng.choice(NOT_NANO_LISTS if defect == "not_used_for_nano" else NANO_LISTS)
    return {
        "input": problem.turns,
        "output": output,
        "reasoning": reasoning,
        "system_prompt": reasoning_system_prompt(reasoning),
        "category": category,
        "license": rng.choice(LICENSES),
        "generator": rng.choice(GENERATORS),
        "used_in_training": list(used),
        "version": version,
    }


def _pick_defect(rng: random.Random, category: str, bad_fraction: float) -> str:
    if rng.random() >= bad_fraction:
        return GOOD
    kinds = [k for k in DEFECT_WEIGHTS if category == "math" or k != "math_without_boxed"]
    return rng.choices(kinds, weights=[DEFECT_WEIGHTS[k] for k in kinds])[0]


def generate(
    out: Path, samples: int, seed: int = 0, bad_fraction: float = 0.15, long_chars: int = 120_000
) -> dict[str, Any]:
    """Write the dataset under `out` (SFT/…) plus `out/manifest.json`; return the manifest."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError(f"bad_fraction must be within [0, 1], got {bad_fraction}")
    rng = random.Random(seed)
    paths = list(FILES)
    weights = [FILES[p][2] for p in paths]
    kinds: dict[str, Counter[str]] = {p: Counter() for p in paths}
    reasoning: dict[str, Counter[str]] = {p: Counter() for p in paths}
    handles = {}
    try:
        for path in paths:
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            handles[path] = target.open("w", encoding="utf-8")
        for _ in range(samples):
            path = rng.choices(paths, weights=weights)[0]
            category, version, _share = FILES[path]
            defect = _pick_defect(rng, category, bad_fraction)
            record = make_record(rng, category, version, defect, long_chars)
            handles[path].write(json.dumps(record, ensure_ascii=False) + "\n")
            kinds[path][defect] += 1
            if defect == GOOD:
                reasoning[path][record["reasoning"]] += 1
    finally:
        for handle in handles.values():
            handle.close()
    manifest: dict[str, Any] = {
        "samples": samples,
        "seed": seed,
        "bad_fraction": bad_fraction,
        "defect_rules": DEFECT_RULES,
        "files": {
            p: {"records": sum(kinds[p].values()), "kinds": dict(kinds[p]), "good_reasoning": dict(reasoning[p])}
            for p in paths
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="Directory to create (gets SFT/… and manifest.json).")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bad-fraction", type=float, default=0.15, help="Share of samples a rule must drop.")
    parser.add_argument("--long-chars", type=int, default=120_000, help="Size of the too-long prompts/completions.")
    args = parser.parse_args(argv)
    manifest = generate(args.out, args.samples, args.seed, args.bad_fraction, args.long_chars)
    print(json.dumps({p: f["records"] for p, f in manifest["files"].items()}, indent=2))


if __name__ == "__main__":
    main()
