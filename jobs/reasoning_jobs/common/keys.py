"""Input keys: one scheme for the local runner's stage cache and the key each job stamps on its artifacts.

A key hashes a stage's inputs (its config, the key of the stage it consumes, a fingerprint of local files
it reads, the project version), so changing any of them changes the key."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from reasoning_operator import __version__


def fingerprint(path: str) -> str | None:
    """Cheap content identity of a local file or directory (names, sizes, mtimes), None for URIs/hub ids.

    Part of a stage's key, so editing the dataset or the base model in place re-runs what reads them."""
    root = Path(path)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(root) if file != root else file.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()[:16]


def stage_key(stage: str, config: dict[str, Any], upstream: str | None) -> str:
    payload = json.dumps(
        {"stage": stage, "config": config, "upstream": upstream, "version": __version__}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
