"""Global quotas and ordering over all shards, holding only sort keys in memory (never rows).

Each shard is a sorted run (reasoning-off rows, then reasoning-on rows, each ascending by completion tokens)
with its keys in a directory of `.npy` files that are memory-mapped, never loaded whole. Quotas pick samples by a
content hash (deterministic, length-unbiased); the curriculum is a streaming k-way merge of the runs per bucket,
interleaved one by one across the whole output. In memory: one keep flag per row, plus the rank and bucket of
every row while quotas are computed.
"""

from __future__ import annotations

import heapq
import itertools
import json
import resource
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

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
        """Memory-mapped key arrays (plain arrays for an empty shard: empty files cannot be mapped)."""
        mode: Literal["r"] | None = "r" if self.rows else None
        return {path.stem: np.load(path, mmap_mode=mode) for path in self.keys_path.glob("*.npy")}

    def categories(self) -> list[str]:
        names: list[str] = json.loads((self.keys_path / CATEGORIES).read_text(encoding="utf-8"))
        return names


CATEGORIES = "categories.json"


def save_keys(directory: Path, categories: list[str], **arrays: NDArray[Any]) -> None:
    """One `.npy` per key (row order = the shard's line order) and the names behind the category codes."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy", array)
    (directory / CATEGORIES).write_text(json.dumps(categories), encoding="utf-8")


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
    masks = [np.ones(shard.rows, dtype=bool) for shard in shards]
    dropped = {rules.CATEGORY_CAP: 0, rules.ON_OFF_RATIO: 0}
    if not category_caps and on_off_ratio is None:
        return masks, dropped
    keys = [shard.keys() for shard in shards]
    offsets = np.cumsum([0] + [shard.rows for shard in shards])
    keep = np.ones(int(offsets[-1]), dtype=bool)
    ranks = np.concatenate([k["rank"] for k in keys]) if keys else np.zeros(0, dtype=np.uint32)
    for category, cap in category_caps.items():
        member = np.concatenate([_is_category(s, k, category) for s, k in zip(shards, keys, strict=True)])
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


def _is_category(shard: Shard, keys: dict[str, NDArray[Any]], category: str) -> NDArray[Any]:
    names = shard.categories()
    if category not in names:
        return np.zeros(shard.rows, dtype=bool)
    result: NDArray[Any] = keys["category"] == names.index(category)
    return result


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


def _run(shard: Shard, mask: NDArray[Any], on: bool, handles: list[IO[bytes]]) -> Iterator[tuple[int, int, int, bytes]]:
    """(completion tokens, shard order, row, line) of one bucket's selected rows, ascending.

    A shard is written reasoning-off rows first, then reasoning-on rows, so a bucket is one contiguous,
    already sorted segment that is read sequentially.
    """
    keys = shard.keys()
    off_rows = shard.rows - int(np.count_nonzero(keys["on"]))
    start, end = (off_rows, shard.rows) if on else (0, off_rows)
    if start >= end or not mask[start:end].any():
        return
    handle: IO[bytes] = shard.path.open("rb")
    handles.append(handle)
    handle.seek(int(keys["offsets"][start]))
    tokens = keys["completion_tokens"]
    for row in range(start, end):
        line = handle.readline()
        if mask[row]:
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
                for shard, mask in zip(shards, masks, strict=True):
                    k = shard.keys()
                    prompt_tokens.append(np.asarray(k["prompt_tokens"][mask]))
                    completion_tokens.append(np.asarray(k["completion_tokens"][mask]))
                buckets = [
                    heapq.merge(*(_run(s, m, on, handles) for s, m in zip(shards, masks, strict=True)))
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
                    prompt_tokens.append(np.asarray(k["prompt_tokens"][mask]))
                    completion_tokens.append(np.asarray(k["completion_tokens"][mask]))
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
