"""Global quotas and ordering over all shards, holding only sort keys in memory (never rows).

Each shard is a sorted run (reasoning-off rows, then reasoning-on rows, each ascending by completion tokens)
with its keys in an `.npz`. Quotas pick samples by a content hash (deterministic, length-unbiased); the
curriculum is a streaming k-way merge of the runs per bucket, interleaved one by one across the whole output.
"""

from __future__ import annotations

import heapq
import itertools
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from . import records as rules


@dataclass
class Shard:
    """One writer output, in global block order."""

    order: int
    path: Path
    keys_path: Path
    rows: int

    def keys(self) -> dict[str, NDArray[Any]]:
        with np.load(self.keys_path) as data:
            return {name: data[name] for name in data.files}


def _keep_first_by_rank(ranks: NDArray[Any], keep: int) -> NDArray[Any]:
    """Mask keeping the `keep` lowest ranks (ties by position)."""
    mask = np.zeros(len(ranks), dtype=bool)
    if keep > 0:
        mask[np.argsort(ranks, kind="stable")[:keep]] = True
    return mask


def select(
    shards: list[Shard], category_caps: dict[str, int], on_off_ratio: float | None
) -> tuple[list[NDArray[Any]], dict[str, int]]:
    """Per-shard keep masks after the per-category caps and the on/off target, and what each quota dropped."""
    keys = [shard.keys() for shard in shards]
    masks = [np.ones(shard.rows, dtype=bool) for shard in shards]
    dropped = {rules.CATEGORY_CAP: 0, rules.ON_OFF_RATIO: 0}
    if not category_caps and on_off_ratio is None:
        return masks, dropped
    offsets = np.cumsum([0] + [shard.rows for shard in shards])
    keep = np.ones(int(offsets[-1]), dtype=bool)
    ranks = np.concatenate([k["rank"] for k in keys]) if keys else np.zeros(0, dtype=np.uint32)
    for category, cap in category_caps.items():
        member = np.concatenate([k["category"] == category for k in keys]) if keys else np.zeros(0, dtype=bool)
        index = np.flatnonzero(member & keep)
        if len(index) > cap:
            keep[index[~_keep_first_by_rank(ranks[index], cap)]] = False
            dropped[rules.CATEGORY_CAP] += len(index) - cap
    if on_off_ratio is not None:
        on = np.concatenate([k["on"] for k in keys]) if keys else np.zeros(0, dtype=bool)
        on_index, off_index = np.flatnonzero(on & keep), np.flatnonzero(~on & keep)
        if len(on_index) > on_off_ratio * len(off_index):
            index, target = on_index, int(on_off_ratio * len(off_index))
        else:
            index, target = off_index, int(len(on_index) / on_off_ratio)
        if len(index) > target:
            keep[index[~_keep_first_by_rank(ranks[index], target)]] = False
            dropped[rules.ON_OFF_RATIO] += len(index) - target
    masks = [keep[offsets[i] : offsets[i + 1]] for i in range(len(shards))]
    return masks, dropped


def _raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + 64
    if soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise RuntimeError(
            f"the curriculum merge needs {needed} open files but the limit is {hard}; use a larger block size"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _run(
    shard: Shard, keys: dict[str, NDArray[Any]], mask: NDArray[Any], on: bool, handles: list[IO[bytes]]
) -> Iterator[tuple[int, int, int, bytes]]:
    """(completion tokens, shard order, row, line) of one bucket's selected rows, ascending."""
    rows = np.flatnonzero((keys["on"] == on) & mask)
    if len(rows) == 0:
        return
    handle: IO[bytes] = shard.path.open("rb")
    handles.append(handle)
    handle.seek(int(keys["offsets"][rows[0]]))
    tokens, offsets = keys["completion_tokens"], keys["offsets"]
    position = int(offsets[rows[0]])
    for row in rows.tolist():
        start = int(offsets[row])
        if start != position:
            handle.seek(start)
        line = handle.readline()
        position = start + len(line)
        yield int(tokens[row]), shard.order, row, line


def _interleave(first: Iterator[bytes], second: Iterator[bytes]) -> Iterator[bytes]:
    """a1 b1 a2 b2 …, then the rest of the longer one."""
    for a, b in itertools.zip_longest(first, second):
        if a is not None:
            yield a
        if b is not None:
            yield b


def write_training_file(
    shards: list[Shard], masks: list[NDArray[Any]], target: Path, curriculum: bool, total: int
) -> dict[str, NDArray[Any]]:
    """Write the selected rows to `target` (curriculum-ordered or in input order); return their token counts."""
    tmp = target.with_suffix(target.suffix + ".tmp")
    prompt_tokens: list[NDArray[Any]] = []
    completion_tokens: list[NDArray[Any]] = []
    handles: list[IO[bytes]] = []
    try:
        with tmp.open("wb") as out, tqdm(total=total, desc="training.jsonl", unit="samples", mininterval=2) as bar:
            if curriculum:
                _raise_open_file_limit(2 * len(shards))
                keys = [shard.keys() for shard in shards]
                for k, mask in zip(keys, masks, strict=True):
                    prompt_tokens.append(k["prompt_tokens"][mask])
                    completion_tokens.append(k["completion_tokens"][mask])
                buckets = [
                    heapq.merge(*(_run(s, k, m, on, handles) for s, k, m in zip(shards, keys, masks, strict=True)))
                    for on in (True, False)
                ]
                on_lines = (item[3] for item in buckets[0])
                off_lines = (item[3] for item in buckets[1])
                for line in _interleave(on_lines, off_lines):
                    out.write(line)
                    bar.update()
            else:
                for shard, mask in zip(shards, masks, strict=True):
                    k = shard.keys()
                    prompt_tokens.append(k["prompt_tokens"][mask])
                    completion_tokens.append(k["completion_tokens"][mask])
                    with shard.path.open("rb") as shard_file:
                        for line, keep in zip(shard_file, mask.tolist(), strict=True):
                            if keep:
                                out.write(line)
                                bar.update()
    finally:
        for run_file in handles:
            run_file.close()
    tmp.replace(target)
    return {
        "prompt": np.concatenate(prompt_tokens) if prompt_tokens else np.zeros(0, dtype=np.int32),
        "completion": np.concatenate(completion_tokens) if completion_tokens else np.zeros(0, dtype=np.int32),
    }


def percentiles(values: NDArray[Any]) -> dict[str, int]:
    if len(values) == 0:
        return {}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": int(p50), "p90": int(p90), "p99": int(p99), "max": int(values.max()), "mean": int(values.mean())}
