"""Wilson intervals, toggle compliance and thinking tokens."""

from __future__ import annotations

import pytest

from reasoning_jobs.evaluate.statistics import complies, thinking_tokens, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # the roots of (k/n - p)^2 = z^2 p (1 - p) / n, solved separately with numpy.roots
        (8, 12, 0.390623, 0.861879),
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        (50, 100, 0.403832, 0.596168),
        (1, 198, 0.000892, 0.028049),
    ],
)
def test_wilson_reference_values(k: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-5)


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize(
    ("response", "mode", "ok"),
    [
        ("<think>x</think>Answer: A", "on", True),
        ("Answer: A", "on", False),
        ("<think>cut off", "on", False),
        ("</think>Answer: A", "on", False),
        ("Answer: A", "off", True),
        ("<think>\n</think>\nAnswer: A", "off", True),
        ("<think>thinking</think>Answer: A", "off", False),
        ("<think>cut off", "off", False),
    ],
)
def test_compliance(response: str, mode: str, ok: bool) -> None:
    assert complies(response, mode) is ok


def test_thinking_tokens() -> None:
    response = "<think>abcd efgh</think>Answer: A"  # 9 of 33 characters are thought
    assert thinking_tokens(response, 33) == pytest.approx(9)
    assert thinking_tokens(response, None) == 2
    assert thinking_tokens("Answer: A", 10) == 0
