"""Reading the curated `training.jsonl` into token ids with a completion-only loss mask.

Every line is checked before any compute is spent: a bad line names its file and line number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

IGNORE_INDEX = -100


class DataError(ValueError):
    """The dataset cannot be trained on; the message names the file and line."""


class Tokenizer(Protocol):
    eos_token_id: int | None

    def __call__(self, text: list[str], *, add_special_tokens: bool) -> Any: ...


@dataclass(frozen=True)
class Sample:
    """One training sample: prompt + completion ids; `prompt_length` ids carry no loss."""

    input_ids: list[int]
    prompt_length: int
    line: int

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def labels(self) -> list[int]:
        return [IGNORE_INDEX] * self.prompt_length + self.input_ids[self.prompt_length :]


def read_records(path: str | Path) -> list[tuple[int, str, str]]:
    """(line number, input, output) for each non-blank line; raises DataError on anything malformed."""
    source = Path(path)
    if not source.is_file():
        raise DataError(f"dataset {source} does not exist (expected the curated training.jsonl)")
    records: list[tuple[int, str, str]] = []
    with source.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as error:
                raise DataError(f"{source}:{number}: not valid JSON ({error.msg})") from error
            if not isinstance(row, dict):
                raise DataError(f"{source}:{number}: expected a JSON object with 'input' and 'output'")
            for field in ("input", "output"):
                if not isinstance(row.get(field), str):
                    raise DataError(f"{source}:{number}: field '{field}' is missing or not a string")
            if not row["output"]:
                raise DataError(f"{source}:{number}: field 'output' is empty, nothing to learn from")
            records.append((number, row["input"], row["output"]))
    if not records:
        raise DataError(f"dataset {source} is empty: no samples to train on")
    return records


def tokenize_records(
    records: list[tuple[int, str, str]],
    tokenizer: Tokenizer,
    max_seq_length: int,
    source: str | Path = "dataset",
    batch: int = 1024,
    progress: bool = False,
) -> list[Sample]:
    """Tokenize prompt and completion separately (the prompt is already templated, BOS included) and
    end every completion with EOS so the model learns to stop."""
    from tqdm import tqdm

    eos = tokenizer.eos_token_id
    samples: list[Sample] = []
    for start in tqdm(range(0, len(records), batch), desc="tokenize", unit="batch", disable=not progress):
        chunk = records[start : start + batch]
        prompts = tokenizer([r[1] for r in chunk], add_special_tokens=False)["input_ids"]
        completions = tokenizer([r[2] for r in chunk], add_special_tokens=False)["input_ids"]
        for (number, _, _), prompt, completion in zip(chunk, prompts, completions, strict=True):
            completion = list(completion)
            if eos is not None and (not completion or completion[-1] != eos):
                completion.append(eos)
            ids = list(prompt) + completion
            if len(ids) > max_seq_length:
                raise DataError(
                    f"{source}:{number}: sample is {len(ids)} tokens, longer than maxSeqLength {max_seq_length} "
                    "(raise spec.training.maxSeqLength or curate with a smaller token limit)"
                )
            samples.append(Sample(input_ids=ids, prompt_length=len(prompt), line=number))
    return samples


def load_samples(path: str | Path, tokenizer: Tokenizer, max_seq_length: int, progress: bool = False) -> list[Sample]:
    return tokenize_records(read_records(path), tokenizer, max_seq_length, source=path, progress=progress)
