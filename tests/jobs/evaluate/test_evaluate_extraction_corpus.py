"""A corpus of tricky responses for the answer extractor: explicit forms, think blocks, self-corrections,
markdown, look-alike letters, and responses that must count as unanswered (never a default letter)."""

from __future__ import annotations

import pytest

from reasoning_jobs.evaluate.extraction import extract_answer

CORPUS: list[tuple[str, str | None]] = [
    # explicit "Answer: X"
    ("Answer: B", "B"),
    ("The reaction is exothermic.\n\nAnswer: C", "C"),
    ("answer: d", "D"),
    ("**Answer:** A", "A"),
    ("**Final Answer: (B)**", "B"),
    ("Final answer: [D]", "D"),
    ("Answer - C", "C"),
    ("ANSWER: (A)", "A"),
    ("Answer: option B", "B"),
    ("Answer: B.\nThis is because ...", "B"),
    # last statement wins (self-correction)
    ("Answer: A\nWait, I made a mistake. Answer: C", "C"),
    ("At first the answer is B. Re-checking the units, the answer is D.", "D"),
    # boxed
    ("Thus \\boxed{C}", "C"),
    ("$\\boxed{\\text{B}}$", "B"),
    ("\\boxed{(A)}", "A"),
    ("so the result is \\boxed{ D }.", "D"),
    ("\\boxed{42}", None),
    # "the answer is X"
    ("The correct answer is (B).", "B"),
    ("Therefore, the answer is C", "C"),
    ("I think the answer is option A.", "A"),
    ("The correct option is D because the spin is 1/2.", "D"),
    ("I choose B.", "B"),
    # think blocks
    ("<think>Maybe A? No, B fits better.</think>\nAnswer: B", "B"),
    ("<think>Option A is wrong. Answer: A is tempting</think>\nThe answer is (D)", "D"),
    ("<think>\nThe answer is C.\n</think>\n\nC", "C"),
    ("<think>Let me see... the answer is B</think>\n(B)", "B"),
    ("<think>long reasoning</think>\n\n**D**", "D"),
    ("<think>long reasoning</think>\nB) 3.2 eV", "B"),
    ("<think>reasoning</think>\nA", "A"),
    ("<think>The answer is B. Answer: B", None),  # cut off while thinking: never answered
    ("<think>\n</think>\n\nAnswer: A", "A"),  # empty think block (reasoning off)
    ("<think>I considered C</think>\nA good question; none of the options fit.", None),
    ("<think>x</think>\nBetween (A) and (C), the best is (C).", "C"),
    # no answer: never a default letter
    ("", None),
    ("I am not sure.", None),
    ("A good question. I cannot determine it from the information given.", None),
    ("The energy is 3.2 eV and the spin is 1/2.", None),
    ("Answer: E", None),  # not an option of a 4-choice question
    ("Answer: B or C", None),  # ambiguous
    ("Answer: B, C", None),
    ("The answer is unclear.", None),
    ("<think>only thoughts, no closing tag and no answer", None),
    ("A", "A"),  # a reply that is only a letter
    ("(C)", "C"),
    ("D.", "D"),
    # look-alikes that must not be read as options
    ("Answer: Avogadro's number is large.", None),
    ("The answer is about 12 J.", None),
    ("<think>hmm</think>\nThe value of pH is 7.", None),
]


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize(("response", "expected"), CORPUS, ids=[f"{i:02d}" for i in range(len(CORPUS))])
def test_extracts(response: str, expected: str | None) -> None:
    assert extract_answer(response, n_choices=4).letter == expected


def test_choice_count_limits_letters() -> None:
    assert extract_answer("Answer: E", n_choices=5).letter == "E"
    assert extract_answer("Answer: C", n_choices=2).letter is None


def test_rule_is_reported() -> None:
    assert extract_answer("\\boxed{B}").rule == "boxed"
    assert extract_answer("nothing").rule is None
