"""The stages, one definition each, and the registry every per-stage table derives from.

A stage is a `StageDef` (base.py) in its own module: its phase, condition, result model, job subcommand,
image, resources, GPUs and kind. `StageKind.JOB` stages are one-shot (a Job, or a RayJob, that reports a
result); `StageKind.SERVICE` is the long-running serving stage (a Deployment and a Service). The operator's
decision, its builders, the status transitions (transitions.py), the CLI, the metrics and the local runner
read `STAGES`; none keeps a table of its own. Adding a stage: its module here and its entry in `STAGES`
(plus its config model in stages.py, and the enum members and status fields the CRD is generated from)."""

from __future__ import annotations

from ..spec import ReasoningRunSpec
from ..status import Stage
from .base import StageDef, StageKind
from .curation import CURATION
from .evaluation import EVALUATION
from .export import EXPORT
from .serving import SERVING
from .training import TRAINING

#: Every stage, in pipeline order; a stage whose `enabled` says no (export without spec.export) is skipped.
STAGES: tuple[StageDef, ...] = (CURATION, TRAINING, SERVING, EVALUATION, EXPORT)
BY_STAGE: dict[Stage, StageDef] = {d.stage: d for d in STAGES}


def definition(stage: Stage) -> StageDef:
    return BY_STAGE[stage]


def pipeline(spec: ReasoningRunSpec) -> list[StageDef]:
    """The stages this run has, in order."""
    return [d for d in STAGES if d.enabled(spec)]


__all__ = ["BY_STAGE", "STAGES", "StageDef", "StageKind", "definition", "pipeline"]
