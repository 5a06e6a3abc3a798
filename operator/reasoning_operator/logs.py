"""Plain or JSON logs (one object a line, for log pipelines)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def __init__(self, shard: int | None = None) -> None:
        super().__init__()
        self.shard = shard

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.shard is not None:
            entry["shard"] = self.shard
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(json_format: bool, verbose: bool, shard: int | None = None) -> None:
    """`shard`: the operator process's shard (shards.py), in every line when runs are spread over several."""
    handler = logging.StreamHandler()
    if json_format:
        handler.setFormatter(JsonFormatter(shard))
    else:
        tag = "" if shard is None else f"[shard {shard}] "
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    if not verbose:
        # "Handler 'run_event' succeeded" for every watch event of every run: noise, and at a thousand runs
        # a real share of the operator's CPU. Failures are still logged (WARNING and above).
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
