"""Stage cache: a finished stage whose inputs are unchanged is reused, not recomputed.

The key hashes the stage's config (minus what changes every run, like the local server's port) and the
key of the stage it consumes, so changing the curation settings re-runs curation and everything after it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasoning_jobs.common.keys import fingerprint, stage_key

__all__ = ["StageCache", "StageRecord", "fingerprint", "stage_key"]


@dataclass(frozen=True)
class StageRecord:
    key: str
    result: dict[str, Any]
    start_time: str
    completion_time: str


class StageCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def _path(self, stage: str) -> Path:
        return self.directory / f"{stage}.json"

    def get(self, stage: str, key: str) -> StageRecord | None:
        path = self._path(stage)
        if not path.is_file():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("key") != key:
            return None
        return StageRecord(record["key"], record["result"], record["startTime"], record["completionTime"])

    def put(self, stage: str, record: StageRecord) -> None:
        body = {
            "key": record.key,
            "result": record.result,
            "startTime": record.start_time,
            "completionTime": record.completion_time,
        }
        tmp = self._path(stage).with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self._path(stage))

    def forget(self, stage: str) -> None:
        self._path(stage).unlink(missing_ok=True)
