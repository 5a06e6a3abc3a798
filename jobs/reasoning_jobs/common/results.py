"""How a job hands its result to the operator: the pod's termination message (compact JSON, read from the
Job's pod status) plus a full `summary.json` beside the stage's output."""

from __future__ import annotations

import json
import os
from pathlib import Path

from reasoning_operator.api import ApiModel

#: Kubernetes truncates termination messages at 4096 bytes; stay under it.
TERMINATION_MESSAGE_LIMIT = 4096
DEFAULT_TERMINATION_PATH = "/dev/termination-log"


def termination_path() -> Path | None:
    """`$TERMINATION_MESSAGE_PATH`, else the kubelet's default file when it exists (i.e. inside a pod)."""
    explicit = os.environ.get("TERMINATION_MESSAGE_PATH")
    if explicit:
        return Path(explicit)
    default = Path(DEFAULT_TERMINATION_PATH)
    return default if default.exists() else None


def report_result(result: ApiModel, output_dir: str | Path, name: str = "summary.json") -> Path:
    """Write the full result to `output_dir/name` and the compact one to the termination message."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / name
    wire = result.to_wire()
    summary.write_text(json.dumps(wire, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    target = termination_path()
    if target is not None:
        compact = json.dumps(wire, separators=(",", ":"), sort_keys=True)
        if len(compact.encode()) > TERMINATION_MESSAGE_LIMIT:
            raise ValueError(
                f"result is {len(compact.encode())} bytes, over the {TERMINATION_MESSAGE_LIMIT}-byte limit"
            )
        target.write_text(compact, encoding="utf-8")
    return summary
