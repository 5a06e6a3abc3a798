"""Which option a response chose, or None: never a default letter.

Only the final answer counts: with a closed think block the text after the last `</think>`; with an
unclosed `<think>` (generation cut off while thinking) nothing, since the model never answered. Within
that text the explicit forms are tried in order of reliability, the last occurrence of a form winning
(models restate and correct themselves):

1. `Answer: X` (also `**Final Answer:** (X)`, `Answer - X`),
2. `\\boxed{X}` (also `\\boxed{\\text{X}}`, `\\boxed{(X)}`),
3. "the answer is X" / "the correct option is (X)" / "I choose X",
4. only after `</think>`, or for a reply that is nothing but a letter: the last option letter standing
   alone (`(C)`, `C)`, `C.`, a line `C`), skipping the article "A".

A statement naming several letters ("Answer: B or C") is ambiguous and ignored.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from reasoning_operator.api.contract import THINK_CLOSE, THINK_OPEN

_NOT_MORE = r"(?!\s*(?:,|/|or\b|and\b|&)\s*\(?[A-Z]\b)"


def _letter(letters: str) -> str:
    return f"[{letters}{letters.lower()}]"


@dataclass(frozen=True)
class Extraction:
    letter: str | None
    rule: str | None


def final_answer_region(text: str) -> tuple[str, bool]:
    """(the part of the response that states the final answer, whether a think block was closed)."""
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1], True
    if THINK_OPEN in text:
        return "", False
    return text, False


def _patterns(letters: str) -> list[tuple[str, re.Pattern[str]]]:
    upper = f"[{letters}]"
    any_case = _letter(letters)
    wrap_open = r"[\s*_`]*[\(\[{]?[\s*_`]*"
    wrap_close = r"[\s*_`]*[\)\]}]?"
    return [
        (
            "answer_colon",
            re.compile(
                rf"answer[\s*_`]*(?:is)?[\s*_`]*[:：\-–—=][\s*_`]*(?:option\s*)?{wrap_open}({any_case}){wrap_close}"
                rf"(?![A-Za-z0-9]){_NOT_MORE}",
                re.IGNORECASE,
            ),
        ),
        (
            "boxed",
            re.compile(rf"\\boxed\s*\{{\s*(?:\\text(?:bf)?\s*\{{)?\s*\(?\s*({any_case})\s*\)?\s*\}}"),
        ),
        (
            "answer_is",
            re.compile(
                rf"(?:answer|option|choice)\s+(?:is|would be|must be|should be)\s*(?:option\s*|choice\s*)?"
                rf"{wrap_open}({upper}){wrap_close}(?![A-Za-z0-9]){_NOT_MORE}"
                rf"|\bI (?:choose|pick|select)\s+(?:option\s*)?{wrap_open}({upper}){wrap_close}(?![A-Za-z0-9])",
                re.IGNORECASE,
            ),
        ),
    ]


def _bare_letter(region: str, letters: str) -> str | None:
    """The last option letter standing alone; "A" followed by a lower-case word is the article."""
    upper = f"[{letters}]"
    pattern = re.compile(rf"(?:^|(?<=[\s(\[*]))\(?({upper})(?:\)|\]|\.(?!\w)|:|(?=[\s*]|$))(?!\s+[a-z])", re.MULTILINE)
    matches = [m.group(1) for m in pattern.finditer(region)]
    return matches[-1] if matches else None


def extract_answer(text: str, n_choices: int = 4) -> Extraction:
    """The chosen letter (upper case) and the rule that found it; (None, None) when there is no answer."""
    letters = string.ascii_uppercase[:n_choices]
    region, closed = final_answer_region(text)
    if not region.strip():
        return Extraction(None, None)
    for rule, pattern in _patterns(letters):
        found = [next(g for g in m.groups() if g) for m in pattern.finditer(region)]
        if found:
            return Extraction(found[-1].upper(), rule)
    stripped = region.strip().strip("*").strip()
    if closed or re.fullmatch(rf"\(?[{letters}][\).]?", stripped):
        letter = _bare_letter(region, letters)
        if letter is not None:
            return Extraction(letter, "last_letter")
    return Extraction(None, None)
