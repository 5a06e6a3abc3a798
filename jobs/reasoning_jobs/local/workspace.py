"""The local stand-in for the run's volume: paths under /workspace in the manifest (as a pod would see
them) point into `<run root>/workspace`, so one manifest means the same thing in a cluster and here."""

from __future__ import annotations

from pathlib import Path

from reasoning_operator.api import ReasoningRunSpec

MOUNT = "/workspace"


def localize(path: str, workspace: Path) -> str:
    if path == MOUNT or path.startswith(MOUNT + "/"):
        return str(workspace / path[len(MOUNT) :].lstrip("/"))
    return path


def localize_spec(spec: ReasoningRunSpec, workspace: Path) -> ReasoningRunSpec:
    """The spec with every volume path mapped into the local workspace (URIs and hub ids untouched)."""
    spec = spec.model_copy(deep=True)
    spec.dataset.source = localize(spec.dataset.source, workspace)
    spec.model.name = localize(spec.model.name, workspace)
    if spec.curation.tokenizer is not None:
        spec.curation.tokenizer = localize(spec.curation.tokenizer, workspace)
    if spec.evaluation.data_dir is not None:
        spec.evaluation.data_dir = localize(spec.evaluation.data_dir, workspace)
    return spec
