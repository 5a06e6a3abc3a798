"""How a job hands its result to the operator: the pod's termination message (compact JSON, read from the
Job's pod status) plus a full `summary.json` beside the stage's output (both named in the API's contract)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reasoning_operator.api import ApiModel
from reasoning_operator.api.contract import (
    SUMMARY_FILE,
    TERMINATION_MESSAGE_PATH,
    TERMINATION_MESSAGE_PATH_ENV,
    termination_message,
)


def termination_path() -> Path | None:
    """`$TERMINATION_MESSAGE_PATH`, else the kubelet's default file when it exists (i.e. inside a pod)."""
    explicit = os.environ.get(TERMINATION_MESSAGE_PATH_ENV)
    if explicit:
        return Path(explicit)
    default = Path(TERMINATION_MESSAGE_PATH)
    return default if default.exists() else None


def report_result(result: ApiModel, output_dir: str | Path, name: str = SUMMARY_FILE) -> Path:
    """Write the full result to `output_dir/name` and the compact one to the termination message."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / name
    wire = result.to_wire()
    summary.write_text(json.dumps(wire, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    target = termination_path()
    if target is not None:
        target.write_text(termination_message(wire), encoding="utf-8")
    return summary
