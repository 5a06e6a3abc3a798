"""What a decision returns: the Plan (children to create, apply and delete; the new status; Events) and
each stage's StageOutcome, shared by decide and the per-kind stage modules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reasoning_operator.api import ApiModel, ReasoningRunStatus, StagePhase


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


CREATE = "create"
APPLY = "apply"


@dataclass
class Plan:
    """What the shell must do. `ops` are (CREATE | APPLY, child) in dependency order (ConfigMap and claim
    before the pods that mount them, the Service before the Job that calls it): the shell stops at the first
    child the apiserver refuses, so nothing that depends on it is created. CREATE is create-if-absent (Jobs,
    PVC: immutable specs), APPLY is server-side apply; `delete` lists (kind, name) of children no longer
    wanted."""

    ops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)
    status: ReasoningRunStatus = field(default_factory=ReasoningRunStatus)
    events: list[Event] = field(default_factory=list)
    #: When the answer would change with time alone (the progress deadline of a waiting stage), if ever:
    #: until then, the same run and children give the same plan.
    recheck_at: datetime | None = None

    @property
    def create(self) -> list[dict[str, Any]]:
        return [obj for op, obj in self.ops if op == CREATE]

    @property
    def apply(self) -> list[dict[str, Any]]:
        return [obj for op, obj in self.ops if op == APPLY]


@dataclass(frozen=True)
class StageOutcome:
    phase: StagePhase
    reason: str
    message: str
    result: ApiModel | None = None
    #: Since when the stage has waited without progress (a pod unscheduled or not starting, serving not
    #: ready); None while it progresses. Past spec.progressDeadlineSeconds, Stalled says so.
    waiting_since: str | None = None
