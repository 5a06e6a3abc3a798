"""One dataset record: parsing with file-and-line errors, and the pure per-sample curation rules.

Kept free of NeMo Curator and Ray so the rules are cheap to test and the benchmark's plain reference can use
the very same definitions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from reasoning_operator.api.contract import THINK_CLOSE, THINK_OPEN, reasoning_system_prompt

#: Fields every record must carry (the rules read them); the other schema fields are passed through.
REQUIRED_FIELDS = ("input", "output", "reasoning", "category", "used_in_training")
PASSTHROUGH_FIELDS = ("system_prompt", "license", "generator", "version")
ROLES = frozenset({"user", "assistant"})

# Rule names: the keys of `dropped` in summary.json, in the order the pipeline applies them.
USED_IN_TRAINING = "used_in_training"
EMPTY_OUTPUT = "empty_output"
THINK_IN_OFF = "think_in_reasoning_off"
MISSING_THINK = "missing_think"
MALFORMED_THINK = "malformed_think"
EMPTY_THINK = "empty_think"
EMPTY_ANSWER = "empty_answer"
MISSING_BOXED = "missing_boxed_answer"
LANGUAGE = "language"
PROMPT_TOO_LONG = "prompt_too_long"
COMPLETION_TOO_LONG = "completion_too_long"
CATEGORY_CAP = "category_cap"
ON_OFF_RATIO = "on_off_ratio"
THINK_RULES = (EMPTY_OUTPUT, THINK_IN_OFF, MISSING_THINK, MALFORMED_THINK, EMPTY_THINK, EMPTY_ANSWER)
RULES = (
    USED_IN_TRAINING,
    *THINK_RULES,
    MISSING_BOXED,
    LANGUAGE,
    PROMPT_TOO_LONG,
    COMPLETION_TOO_LONG,
    CATEGORY_CAP,
    ON_OFF_RATIO,
)


class RecordError(ValueError):
    """A line that is not a usable record; the message names the field."""


@dataclass(frozen=True)
class Record:
    """The fields the rules need, plus the pass-through ones, validated."""

    input: list[dict[str, str]]
    output: str
    reasoning: str
    category: str
    used_in_training: tuple[str, ...]
    extra: dict[str, Any]


def _used_in_training(value: Any) -> tuple[str, ...]:
    # The published dataset spells it as a list; some dumps use "Ultra, Super, Nano".
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RecordError(f"field 'used_in_training' must be a list of strings, got {type(value).__name__}")


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise RecordError("field 'input' must be a non-empty list of chat messages")
    messages: list[dict[str, str]] = []
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise RecordError(f"input[{i}] must be an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RecordError(f"input[{i}].role must be 'user' or 'assistant', got {role!r}")
        if not isinstance(content, str):
            raise RecordError(f"input[{i}].content must be a string")
        messages.append({"role": role, "content": content})
    if messages[0]["role"] != "user":
        raise RecordError("input[0].role must be 'user'")
    return messages


def parse_record(line: bytes | str) -> Record:
    """Parse one JSONL line; raise RecordError naming what is wrong."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        raise RecordError(f"invalid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise RecordError(f"expected a JSON object, got {type(raw).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in raw]
    if missing:
        raise RecordError(f"missing field {', '.join(repr(m) for m in missing)}")
    output, reasoning, category = raw["output"], raw["reasoning"], raw["category"]
    if not isinstance(output, str):
        raise RecordError("field 'output' must be a string")
    if reasoning not in ("on", "off"):
        raise RecordError(f"field 'reasoning' must be 'on' or 'off', got {reasoning!r}")
    if not isinstance(category, str):
        raise RecordError("field 'category' must be a string")
    return Record(
        input=_messages(raw["input"]),
        output=output,
        reasoning=reasoning,
        category=category,
        used_in_training=_used_in_training(raw["used_in_training"]),
        extra={name: raw.get(name) for name in PASSTHROUGH_FIELDS},
    )


def think_violation(output: str, reasoning: str) -> str | None:
    """The think-tag rule `output` breaks, or None.

    Reasoning-on: exactly one `<think>` before exactly one `</think>`, something but whitespace inside, and a
    non-empty answer after. Reasoning-off: no think tags at all.
    """
    if not output.strip():
        return EMPTY_OUTPUT
    opens, closes = output.count(THINK_OPEN), output.count(THINK_CLOSE)
    if reasoning == "off":
        return THINK_IN_OFF if opens or closes else None
    if opens == 0 and closes == 0:
        return MISSING_THINK
    start, end = output.find(THINK_OPEN), output.find(THINK_CLOSE)
    if opens != 1 or closes != 1 or end < start:
        return MALFORMED_THINK
    if not output[start + len(THINK_OPEN) : end].strip():
        return EMPTY_THINK
    if not output[end + len(THINK_CLOSE) :].strip():
        return EMPTY_ANSWER
    return None


def final_answer(output: str) -> str:
    """The part after the reasoning (all of `output` when there is no `</think>`)."""
    end = output.rfind(THINK_CLOSE)
    return output if end < 0 else output[end + len(THINK_CLOSE) :]


_BOXED = re.compile(r"\\boxed\s*\{")


def has_boxed_answer(text: str) -> bool:
    """True when `text` holds `\\boxed{…}` with balanced braces and something inside."""
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            char = text[i]
            if char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    if text[start:i].strip():
                        return True
                    break
    return False


def language_text(messages: list[dict[str, str]], output: str) -> str:
    """Prompt (every turn) and response text, think tags removed, on one line as fastText wants it: every run of
    whitespace becomes one space, none at the ends (`str.split()` splits on exactly the characters `re`'s `\\s`
    matches, so this equals `re.sub(r"\\s+", " ", text).strip()` at a third of the cost)."""
    text = " ".join(m["content"] for m in messages) + " " + output.replace(THINK_OPEN, " ").replace(THINK_CLOSE, " ")
    return " ".join(text.split())


def conversation(messages: list[dict[str, str]], reasoning: str) -> list[dict[str, str]]:
    """What the chat template renders: the reasoning system prompt, then every turn."""
    return [{"role": "system", "content": reasoning_system_prompt(reasoning)}, *messages]
