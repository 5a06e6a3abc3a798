"""Reading, tokenizing and batching the curated data (no model needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from reasoning_jobs.common.assets import offline_tokenizer_path
from reasoning_jobs.train.batching import (
    pack_samples,
    packed_micro_batch,
    shifted_targets,
    step_micro_batches,
    stream_indices,
)
from reasoning_jobs.train.data import IGNORE_INDEX, DataError, Sample, load_samples, read_records


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(offline_tokenizer_path())


def test_loss_mask_covers_only_completion_tokens(dataset: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    samples = load_samples(dataset, tokenizer, 512)
    first = json.loads(dataset.read_text().splitlines()[0])
    prompt_ids = tokenizer(first["input"], add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(first["output"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    sample = samples[0]
    assert sample.input_ids == prompt_ids + completion_ids
    targets = shifted_targets(sample)
    supervised = [t for t in targets if t != IGNORE_INDEX]
    # exactly the completion (incl. EOS) is predicted, each from the token before it
    assert supervised == completion_ids
    assert all(t == IGNORE_INDEX for t in targets[: len(prompt_ids) - 1])
    assert targets[-1] == IGNORE_INDEX
    assert sample.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)


def test_packing_preserves_order_and_budget() -> None:
    samples = [
        Sample(input_ids=list(range(3, 3 + n)), prompt_length=1, line=i + 1)
        for i, n in enumerate([5, 9, 3, 7, 7, 2, 10, 1])
    ]
    packs = pack_samples(samples, token_budget=12)
    assert [s.line for pack in packs for s in pack] == list(range(1, 9))
    assert all(sum(len(s) for s in pack) <= 12 for pack in packs)
    batch = packed_micro_batch(packs[0])
    assert batch.position_ids[0] == [p for s in packs[0] for p in range(len(s))]
    # no target crosses a sample boundary: the last position of every sample predicts nothing
    ends = [sum(len(s) for s in packs[0][: i + 1]) - 1 for i in range(len(packs[0]))]
    assert all(batch.targets[0][e] == IGNORE_INDEX for e in ends)


def test_step_batches_follow_the_stream_and_wrap_epochs() -> None:
    samples = [Sample(input_ids=[3] * (i % 5 + 2), prompt_length=1, line=i + 1) for i in range(10)]
    lines = []
    for step in range(3):
        batches = step_micro_batches(samples, step, 4, 2, 8, packing=True, shuffle=False, seed=0, pad_id=0)
        lines.extend(line for mb in batches for line in mb.sample_lines)
    assert lines == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    padded = step_micro_batches(samples, 0, 4, 2, 8, packing=False, shuffle=False, seed=0, pad_id=0)
    assert [mb.sample_lines for mb in padded] == [[1, 2], [3, 4]]
    assert padded[0].attention_mask == [[1, 1, 0], [1, 1, 1]]
    shuffled = stream_indices(0, 10, 10, shuffle=True, seed=1)
    assert sorted(shuffled) == list(range(10)) and shuffled != list(range(10))
    assert shuffled == stream_indices(0, 10, 10, shuffle=True, seed=1)


def test_bad_lines_are_named(tmp_path: Path, tokenizer) -> None:  # type: ignore[no-untyped-def]
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match="does not exist"):
        read_records(missing)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="is empty"):
        read_records(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"input": "a", "output": "b"}\n{"input": "a"\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2: not valid JSON"):
        read_records(broken)
    no_output = tmp_path / "no_output.jsonl"
    no_output.write_text('{"input": "a", "output": "b"}\n{"input": "a"}\n')
    with pytest.raises(DataError, match=r"no_output.jsonl:2: field 'output'"):
        read_records(no_output)
    long = tmp_path / "long.jsonl"
    long.write_text('{"input": "a", "output": "b"}\n' + json.dumps({"input": "x", "output": "word " * 200}) + "\n")
    with pytest.raises(DataError, match=r"long.jsonl:2: sample is \d+ tokens, longer than maxSeqLength 64"):
        load_samples(long, tokenizer, 64)
