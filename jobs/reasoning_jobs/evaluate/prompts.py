"""The user message for a multiple-choice question (the system message carries the reasoning toggle)."""

from __future__ import annotations

from .benchmarks import Question


def format_question(question: Question) -> str:
    letters = question.letters
    options = "\n".join(f"{letter}) {choice}" for letter, choice in zip(letters, question.choices, strict=True))
    allowed = ", ".join(letters)
    return (
        "Answer the following multiple-choice question. "
        f'The last line of your response must be "Answer: X", where X is one of {allowed}.\n\n'
        f"{question.question}\n\n{options}"
    )
