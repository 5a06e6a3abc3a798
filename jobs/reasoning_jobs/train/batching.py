"""Which samples each optimizer step sees, and how they become micro batches.

A step always consumes exactly `global_batch_size` samples from the (curriculum-ordered) stream, so the data
position is just the step number and a resumed run sees the same next batch. Packing is next-fit in stream
order: samples are never reordered, so the curriculum is kept exactly (well within the one-batch allowance).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from .data import IGNORE_INDEX, Sample


@dataclass(frozen=True)
class MicroBatch:
    """Host-side micro batch. Packed: one row, no padding, positions restart at every sample.
    Padded: `rows` rows padded on the right, with an attention mask."""

    input_ids: list[list[int]]
    targets: list[list[int]]
    position_ids: list[list[int]]
    attention_mask: list[list[int]] | None
    seq_lengths: list[int] = field(default_factory=list)
    sample_lines: list[int] = field(default_factory=list)

    @property
    def num_tokens(self) -> int:
        return sum(self.seq_lengths)

    @property
    def num_target_tokens(self) -> int:
        return sum(1 for row in self.targets for t in row if t != IGNORE_INDEX)


def shifted_targets(sample: Sample) -> list[int]:
    """Next-token target for every position of one sample; only completion tokens are predicted, and the
    last position predicts nothing, so packed samples never learn across their boundary."""
    ids = sample.input_ids
    return [ids[i + 1] if i + 1 >= sample.prompt_length else IGNORE_INDEX for i in range(len(ids) - 1)] + [IGNORE_INDEX]


def stream_indices(step: int, global_batch_size: int, dataset_size: int, shuffle: bool, seed: int) -> list[int]:
    """Dataset indices of the samples that optimizer step `step` (0-based) consumes; epochs wrap around."""
    indices: list[int] = []
    permutations: dict[int, list[int]] = {}
    for position in range(step * global_batch_size, (step + 1) * global_batch_size):
        epoch, offset = divmod(position, dataset_size)
        if not shuffle:
            indices.append(offset)
            continue
        if epoch not in permutations:
            order = list(range(dataset_size))
            random.Random(seed + epoch).shuffle(order)
            permutations[epoch] = order
        indices.append(permutations[epoch][offset])
    return indices


def pack_samples(samples: Sequence[Sample], token_budget: int) -> list[list[Sample]]:
    """Next-fit packing in order: start a new pack when the next sample does not fit the current one."""
    packs: list[list[Sample]] = []
    current: list[Sample] = []
    used = 0
    for sample in samples:
        if len(sample) > token_budget:
            raise ValueError(f"sample from line {sample.line} ({len(sample)} tokens) exceeds the pack budget")
        if current and used + len(sample) > token_budget:
            packs.append(current)
            current, used = [], 0
        current.append(sample)
        used += len(sample)
    if current:
        packs.append(current)
    return packs


def packed_micro_batch(pack: Sequence[Sample]) -> MicroBatch:
    ids: list[int] = []
    targets: list[int] = []
    positions: list[int] = []
    for sample in pack:
        ids.extend(sample.input_ids)
        targets.extend(shifted_targets(sample))
        positions.extend(range(len(sample)))
    return MicroBatch(
        input_ids=[ids],
        targets=[targets],
        position_ids=[positions],
        attention_mask=None,
        seq_lengths=[len(s) for s in pack],
        sample_lines=[s.line for s in pack],
    )


def padded_micro_batch(rows: Sequence[Sample], pad_id: int) -> MicroBatch:
    width = max(len(s) for s in rows)
    return MicroBatch(
        input_ids=[s.input_ids + [pad_id] * (width - len(s)) for s in rows],
        targets=[shifted_targets(s) + [IGNORE_INDEX] * (width - len(s)) for s in rows],
        position_ids=[list(range(len(s))) + [0] * (width - len(s)) for s in rows],
        attention_mask=[[1] * len(s) + [0] * (width - len(s)) for s in rows],
        seq_lengths=[len(s) for s in rows],
        sample_lines=[s.line for s in rows],
    )


def step_micro_batches(
    samples: Sequence[Sample],
    step: int,
    global_batch_size: int,
    micro_batch_size: int,
    max_seq_length: int,
    packing: bool,
    shuffle: bool,
    seed: int,
    pad_id: int,
) -> list[MicroBatch]:
    """The micro batches of one optimizer step. Packed micro batches hold up to
    `micro_batch_size × max_seq_length` tokens in one padding-free row."""
    chosen = [samples[i] for i in stream_indices(step, global_batch_size, len(samples), shuffle, seed)]
    if packing:
        return [packed_micro_batch(p) for p in pack_samples(chosen, micro_batch_size * max_seq_length)]
    return [
        padded_micro_batch(chosen[i : i + micro_batch_size], pad_id) for i in range(0, len(chosen), micro_batch_size)
    ]
