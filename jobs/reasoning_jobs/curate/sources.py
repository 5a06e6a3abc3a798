"""Where the input lives (local directory, hf://, s3://, gs://), which files are selected, and how a file is
cut into line-aligned byte blocks so a worker's memory is bounded by the block size, not the file size."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

JSONL_SUFFIXES = (".jsonl", ".json")


class SourceError(ValueError):
    """The input cannot be found or read; the message names it."""


def fsspec_url(source: str) -> str:
    """`hf://ORG/NAME` (a dataset id, as the API spells it) -> fsspec's `hf://datasets/ORG/NAME`."""
    if source.startswith("hf://") and not source.startswith(("hf://datasets/", "hf://spaces/", "hf://models/")):
        return "hf://datasets/" + source.removeprefix("hf://")
    return source


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """(fsspec filesystem, path within it); a clear error when the protocol's package is missing."""
    from fsspec.core import url_to_fs  # type: ignore[import-untyped]

    try:
        fs, path = url_to_fs(url, **(storage_options or {}))
    except (ImportError, ValueError) as error:
        raise SourceError(f"cannot open {url}: {error}") from error
    return fs, path


def matches(name: str, filters: list[str]) -> bool:
    """A file is selected when its name contains one of the filters (math_v1.1 does not match math_v1.jsonl)."""
    return not filters or any(f in name for f in filters)


@dataclass(frozen=True)
class InputFile:
    url: str
    relative: str
    size: int


def select_files(source: str, filters: list[str], storage_options: dict[str, Any] | None = None) -> list[InputFile]:
    """Every *.jsonl under `source` whose file name matches a filter, in a stable (sorted) order."""
    url = fsspec_url(source)
    fs, root = filesystem(url, storage_options)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    local = protocol in ("file", "local")
    if local and not fs.exists(root):
        raise SourceError(f"input directory {source} does not exist")
    if local and not fs.isdir(root):
        raise SourceError(f"input {source} is not a directory")
    try:
        found = fs.find(root, detail=True)
    except Exception as error:
        raise SourceError(f"cannot list {source}: {type(error).__name__}: {error}") from error
    if not found and not local:
        raise SourceError(
            f"found no files under {source}: check the name, the network and the credentials (HF_TOKEN, AWS_*, …)"
        )
    selected: list[InputFile] = []
    for path, info in sorted(found.items()):
        name = posixpath.basename(path)
        if not name.endswith(JSONL_SUFFIXES) or not matches(name, filters):
            continue
        full = path if local else f"{protocol}://{path}"
        selected.append(InputFile(url=full, relative=posixpath.relpath(path, root), size=int(info.get("size") or 0)))
    if not selected:
        raise SourceError(f"no *.jsonl file under {source} matches the file-name filters {filters}")
    return selected


@dataclass(frozen=True)
class Block:
    """Bytes [start, end) of one file; owns every line whose first byte lies inside."""

    file_index: int
    block_index: int
    url: str
    relative: str
    start: int
    end: int


def plan_blocks(files: list[InputFile], block_size: int) -> list[Block]:
    blocks: list[Block] = []
    for file_index, f in enumerate(files):
        for block_index, start in enumerate(range(0, max(f.size, 1), block_size)):
            blocks.append(Block(file_index, block_index, f.url, f.relative, start, min(start + block_size, f.size)))
    return blocks


def read_block_lines(block: Block, storage_options: dict[str, Any] | None = None) -> list[bytes]:
    """The lines a block owns (newline stripped, empty ones kept so line numbers stay right).

    Hadoop-style split: skip the line that straddles `start` (the previous block owns it), then read past
    `end` to finish the last line.
    """
    fs, path = filesystem(block.url, storage_options)
    with fs.open(path, "rb") as handle:
        if block.start > 0:
            handle.seek(block.start - 1)
            handle.readline()
        position = handle.tell()
        if position >= block.end and block.start > 0:
            return []
        data = handle.read(max(block.end - position, 0))
        if data and not data.endswith(b"\n"):
            data += handle.readline()
    if not data:
        return []
    lines: list[bytes] = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines
