"""The curation rules as NeMo Curator `ProcessingStage`s, run by Curator's Ray Data executor.

Every stage after the reader takes and returns one `DocumentBatch` per input block (never None, so counts
travel with empty blocks too) and adds what it dropped to `task._metadata["curate"]["dropped"][rule]`. The
pipeline runs them inside one `StageChain` stage (reader → rules → chat template → writer), so a block is parsed
once and never pickled between rules (Ray Data's fusion of separate stages still pickles the block at every
boundary). The stages are stateless task stages; models (fastText, tokenizer) are loaded once per worker process
through a cache instead of `setup()`, which would make them actor stages (own CPU reservations that cannot fuse,
and that starve each other at one or two CPUs).
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from nemo_curator.stages.base import ProcessingStage
from nemo_curator.stages.resources import Resources
from nemo_curator.tasks import DocumentBatch, EmptyTask, FileGroupTask

from . import records as rules
from .curriculum import save_keys
from .language import cached_lang_id_filter
from .records import RecordError, parse_record
from .sources import Block, read_block_lines
from .tokenization import WorkerTokenizer

DATASET_NAME = "llama-nemotron-post-training"
#: errors kept per block with their line numbers (all are counted)
ERRORS_PER_BLOCK = 5
META = "curate"
ROW = "_row"
COLUMNS = ["messages", "output", "reasoning", "category", "used_in_training", *rules.PASSTHROUGH_FIELDS, ROW]
TASK_SPEC = {"is_actor_stage": False}


@lru_cache(maxsize=1)
def process_allocator() -> str:
    """The malloc this process runs on (a library preloaded into it, else the C library's), for the job's log:
    whether Ray's workers got the allocator `pipeline.allocator_env` chose is otherwise invisible."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "unknown"
    return next((name for name in ("mimalloc", "jemalloc", "tcmalloc") if f"/lib{name}" in maps), "libc")


def warm_worker(tokenizer: WorkerTokenizer, model_path: str, min_score: float, lang: str) -> int:
    """A worker's one-time work: the tokenizer's tools (imports transformers' template helpers) and fastText's
    model, cached per process for the blocks that follow. Returns the worker's pid."""
    tokenizer.tools()
    cached_lang_id_filter(model_path, min_score, lang)
    process_allocator()
    return os.getpid()


def _meta(task: DocumentBatch | FileGroupTask) -> dict[str, Any]:
    meta: dict[str, Any] = task._metadata[META]
    return meta


class Batch(DocumentBatch):  # type: ignore[misc]
    """A DocumentBatch whose repr does not print its rows. Ray Data first tries to store a stage's output tasks
    as a native Arrow column, fails, and builds its error message from `str()` of the tasks before falling back to
    pickling them: with the dataclass repr that rendered the whole DataFrame, ~4 % of a worker's time."""

    def __repr__(self) -> str:
        return f"Batch(task_id={self.task_id!r}, rows={len(self.data)})"


def _with_data(task: DocumentBatch, data: pd.DataFrame) -> DocumentBatch:
    return Batch(dataset_name=task.dataset_name, data=data, _metadata=task._metadata, _stage_perf=task._stage_perf)


def _drop(task: DocumentBatch, reasons: list[str | None]) -> DocumentBatch:
    """Keep the rows whose reason is None; count the others under their rule name."""
    dropped = _meta(task)["dropped"]
    for reason in reasons:
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
    df: pd.DataFrame = task.data
    keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
    return _with_data(task, df.loc[keep].reset_index(drop=True))


@dataclass
class BlockPartitionStage(ProcessingStage[EmptyTask, FileGroupTask]):  # type: ignore[misc]
    """One task per line-aligned byte block of the selected files (planned by the driver)."""

    blocks: list[Block]
    name: str = "block_partitioning"
    resources: Resources = field(default_factory=lambda: Resources(cpus=0.5))

    def inputs(self) -> tuple[list[str], list[str]]:
        return [], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return [], []

    def num_workers(self) -> int | None:
        return 1

    def process(self, task: EmptyTask) -> list[FileGroupTask]:
        return [
            FileGroupTask(
                dataset_name=DATASET_NAME,
                data=[block.url],
                _metadata={"source_files": [block.url], META: {"block": asdict(block)}},
            )
            for block in self.blocks
        ]


@dataclass
class ReadBlockStage(ProcessingStage[FileGroupTask, DocumentBatch]):  # type: ignore[misc]
    """Parse a block's lines; malformed lines and missing fields are counted with their line in the block."""

    storage_options: dict[str, Any] = field(default_factory=dict)
    name: str = "read_block"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], COLUMNS

    def ray_stage_spec(self) -> dict[str, Any]:
        return dict(TASK_SPEC)

    def process(self, task: FileGroupTask) -> DocumentBatch:
        block = Block(**_meta(task)["block"])
        lines = read_block_lines(block, self.storage_options)
        columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        errors: list[tuple[int, str]] = []
        malformed = 0
        for index, line in enumerate(lines):
            if not line.strip():
                continue  # a blank line is not a sample
            try:
                record = parse_record(line)
            except RecordError as error:
                malformed += 1
                if len(errors) < ERRORS_PER_BLOCK:
                    errors.append((index, str(error)))
                continue
            columns["messages"].append(record.input)
            columns["output"].append(record.output)
            columns["reasoning"].append(record.reasoning)
            columns["category"].append(record.category)
            columns["used_in_training"].append(record.used_in_training)
            for name in rules.PASSTHROUGH_FIELDS:
                columns[name].append(record.extra[name])
            columns[ROW].append(index)
        parsed = len(columns[ROW])
        meta = {
            "block": asdict(block),
            "lines": len(lines),
            "read": parsed + malformed,
            "malformed": malformed,
            "errors": errors,
            "dropped": {},
        }
        data = pd.DataFrame(columns, dtype=object)
        return Batch(
            dataset_name=task.dataset_name,
            data=data,
            _metadata={**task._metadata, META: meta},
            _stage_perf=task._stage_perf,
        )


@dataclass
class _RuleStage(ProcessingStage[DocumentBatch, DocumentBatch]):  # type: ignore[misc]
    """Base for the filters: subclasses say, per row, which rule it breaks (None: keep)."""

    name: str = "rule"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def ray_stage_spec(self) -> dict[str, Any]:
        return dict(TASK_SPEC)

    def reasons(self, df: pd.DataFrame) -> list[str | None]:
        raise NotImplementedError

    def process(self, task: DocumentBatch) -> DocumentBatch:
        df: pd.DataFrame = task.data
        if df.empty:
            return task
        return _drop(task, self.reasons(df))


@dataclass
class UsedInTrainingFilter(_RuleStage):
    """Keep samples whose `used_in_training` lists the model (e.g. Nano)."""

    model: str | None = None
    name: str = "used_in_training_filter"

    def reasons(self, df: pd.DataFrame) -> list[str | None]:
        if self.model is None:
            return [None] * len(df)
        return [None if self.model in used else rules.USED_IN_TRAINING for used in df["used_in_training"]]


@dataclass
class ThinkTagFilter(_RuleStage):
    """Empty outputs, empty or malformed `<think>` blocks, think tags in reasoning-off samples."""

    name: str = "think_tag_filter"

    def reasons(self, df: pd.DataFrame) -> list[str | None]:
        return [rules.think_violation(o, r) for o, r in zip(df["output"], df["reasoning"], strict=True)]


@dataclass
class BoxedAnswerFilter(_RuleStage):
    """Math samples must end in a `\\boxed{}` final answer."""

    categories: tuple[str, ...] = ("math",)
    name: str = "boxed_answer_filter"

    def reasons(self, df: pd.DataFrame) -> list[str | None]:
        return [
            rules.MISSING_BOXED if c in self.categories and not rules.has_boxed_answer(rules.final_answer(o)) else None
            for c, o in zip(df["category"], df["output"], strict=True)
        ]


@dataclass
class LanguageFilter(_RuleStage):
    """fastText lid.176 on prompt and response text (NeMo Curator's FastTextLangId semantics)."""

    model_path: str = ""
    lang: str = "en"
    min_score: float = 0.5
    name: str = "language_filter"

    def reasons(self, df: pd.DataFrame) -> list[str | None]:
        lang_id = cached_lang_id_filter(self.model_path, self.min_score, self.lang)
        texts = [rules.language_text(m, o) for m, o in zip(df["messages"], df["output"], strict=True)]
        return [None if keep else rules.LANGUAGE for keep in lang_id.keep_texts(texts)]


@dataclass
class ChatTemplateStage(_RuleStage):
    """Render the prompt (reasoning system prompt + every turn), append the end-of-turn text to the
    completion, count tokens, and drop samples over the limits."""

    tokenizer: WorkerTokenizer = field(default_factory=lambda: WorkerTokenizer(name=""))
    completion_prefix: str = ""
    completion_suffix: str = ""
    max_prompt_tokens: int = 8192
    max_completion_tokens: int = 16384
    name: str = "chat_template"

    def process(self, task: DocumentBatch) -> DocumentBatch:
        df: pd.DataFrame = task.data
        if df.empty:
            return task
        render_prompts, count_tokens = self.tokenizer.tools()
        checked, mismatched = count_tokens.checked, count_tokens.mismatched
        conversations = [rules.conversation(m, r) for m, r in zip(df["messages"], df["reasoning"], strict=True)]
        prompts = render_prompts(conversations)
        completions = [self.completion_prefix + o + self.completion_suffix for o in df["output"]]
        prompt_tokens = count_tokens(prompts)
        completion_tokens = count_tokens(completions)
        _meta(task)["token_counter"] = {
            "name": count_tokens.name,
            "checked": count_tokens.checked - checked,
            "mismatched": count_tokens.mismatched - mismatched,
        }
        df = df.assign(
            prompt=pd.Series(prompts, dtype=object, index=df.index),
            completion=pd.Series(completions, dtype=object, index=df.index),
            prompt_tokens=np.asarray(prompt_tokens, dtype=np.int32),
            completion_tokens=np.asarray(completion_tokens, dtype=np.int32),
        )
        reasons: list[str | None] = [
            rules.PROMPT_TOO_LONG
            if p > self.max_prompt_tokens
            else rules.COMPLETION_TOO_LONG
            if c > self.max_completion_tokens
            else None
            for p, c in zip(prompt_tokens, completion_tokens, strict=True)
        ]
        return _drop(_with_data(task, df), reasons)


#: output columns in order; `input`/`output` are replaced by the templated prompt and the completion
SOURCE_COLUMNS = {"input": "prompt", "output": "completion"}
OUTPUT_COLUMNS = [
    "input",
    "output",
    "reasoning",
    "system_prompt",
    "category",
    "license",
    "generator",
    "used_in_training",
    "version",
]


@dataclass
class ShardWriterStage(ProcessingStage[DocumentBatch, FileGroupTask]):  # type: ignore[misc]
    """Write the block's kept samples as one JSONL shard plus its sort keys (a directory of `.npy` files).

    With the curriculum, rows are written reasoning-off first then reasoning-on, each ascending by completion
    tokens (stable: input order breaks ties), so the driver merges the shards' sorted runs without loading
    rows. Without it, rows keep input order. Keys: bucket, token counts, category, a content hash (rank for
    quota sampling) and line byte offsets.
    """

    shard_dir: str = ""
    keys_dir: str = ""
    curriculum: bool = True
    remove_columns: tuple[str, ...] = ()
    name: str = "shard_writer"

    def inputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def outputs(self) -> tuple[list[str], list[str]]:
        return ["data"], []

    def ray_stage_spec(self) -> dict[str, Any]:
        return dict(TASK_SPEC)

    def process(self, task: DocumentBatch) -> FileGroupTask:
        meta = _meta(task)
        block = meta["block"]
        stem = f"part-{block['file_index']:05d}-{block['block_index']:06d}"
        shard = Path(self.shard_dir) / f"{stem}.jsonl"
        keys = Path(self.keys_dir) / stem
        df: pd.DataFrame = task.data
        if df.empty:
            on = np.zeros(0, dtype=bool)
            order = np.zeros(0, dtype=np.int64)
        else:
            on = np.asarray([r == "on" for r in df["reasoning"]], dtype=bool)
            tokens = df["completion_tokens"].to_numpy(dtype=np.int64)
            rows = df[ROW].to_numpy(dtype=np.int64)
            order = np.lexsort((rows, tokens, on)) if self.curriculum else np.argsort(rows, kind="stable")
        columns = [c for c in OUTPUT_COLUMNS if c not in self.remove_columns]
        offsets = np.zeros(len(order) + 1, dtype=np.int64)
        ranks = np.zeros(len(order), dtype=np.uint32)
        values = {c: df[SOURCE_COLUMNS.get(c, c)].tolist() for c in columns} if len(order) else {}
        with shard.open("wb") as handle:
            position = 0
            for i, row in enumerate(order.tolist()):
                line = orjson.dumps({c: values[c][row] for c in columns}) + b"\n"
                handle.write(line)
                ranks[i] = zlib.crc32(line)
                position += len(line)
                offsets[i + 1] = position
        if len(order):
            categories = sorted({str(c) for c in df["category"]})
            codes = {name: i for i, name in enumerate(categories)}
            completion_tokens = df["completion_tokens"].to_numpy(dtype=np.int32)[order]
            prompt_tokens = df["prompt_tokens"].to_numpy(dtype=np.int32)[order]
            category_codes = np.asarray([codes[str(c)] for c in df["category"]], dtype=np.uint16)[order]
        else:
            categories = []
            completion_tokens = prompt_tokens = np.zeros(0, dtype=np.int32)
            category_codes = np.zeros(0, dtype=np.uint16)
        save_keys(
            keys,
            categories,
            on=on[order],
            completion_tokens=completion_tokens,
            prompt_tokens=prompt_tokens,
            category=category_codes,
            rank=ranks,
            offsets=offsets,
        )
        meta = {**meta, "shard": str(shard), "keys": str(keys), "written": len(order), "on": int(on.sum())}
        return FileGroupTask(
            dataset_name=task.dataset_name,
            data=[str(shard)],
            _metadata={**task._metadata, META: meta},
            _stage_perf=task._stage_perf,
        )


@dataclass
class StageChain(ProcessingStage[FileGroupTask, FileGroupTask]):  # type: ignore[misc]
    """The job's stages (reader → rules → chat template → writer) run one after another inside one Curator stage.

    Ray Data fuses consecutive task stages into one task, but still hands the block from each stage to the next as
    an Arrow block: the tasks are pickled into it and out again at every boundary (after Ray Data first tries a
    native Arrow column and builds its error message). With one stage per rule that was ~0.05 s per 8 MiB block
    and boundary, six boundaries, ~25 % of a worker's time (py-spy). In the chain, the block only crosses Ray Data
    as the reader's input and the writer's output (file names and counts). Each step is the same stage with the
    same semantics (a rule sees only the rows the rules before it kept), and each step's seconds are kept in the
    result's metadata (`seconds`) so the job still reports them per stage.
    """

    steps: tuple[ProcessingStage[Any, Any], ...] = ()
    name: str = "curate_block"

    def inputs(self) -> tuple[list[str], list[str]]:
        return self.steps[0].inputs() if self.steps else ([], [])

    def outputs(self) -> tuple[list[str], list[str]]:
        return self.steps[-1].outputs() if self.steps else ([], [])

    def ray_stage_spec(self) -> dict[str, Any]:
        return dict(TASK_SPEC)

    def process(self, task: FileGroupTask) -> FileGroupTask:
        seconds: dict[str, float] = {}
        current: Any = task
        for step in self.steps:
            started = time.perf_counter()
            current = step.process(current)
            seconds[step.name] = seconds.get(step.name, 0.0) + time.perf_counter() - started
        _meta(current)["seconds"] = seconds
        _meta(current)["allocator"] = process_allocator()
        _meta(current)["pid"] = os.getpid()
        result: FileGroupTask = current
        return result
