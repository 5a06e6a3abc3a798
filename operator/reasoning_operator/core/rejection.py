"""Why the apiserver refused a child, and what that means for the run: pure, so it is unit tested with the
Status bodies an apiserver sends.

A refusal (422 Invalid, 403 Forbidden, 400 BadRequest, 413 too large) will be refused again on every retry,
so the run fails once, with the child, the field and the apiserver's own message, and stops asking.
Anything else (5xx, 429, 409, a timeout, a dropped connection) may pass next time: retried with backoff."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reasoning_operator.api import (
    ConditionType,
    Phase,
    ReasoningRunStatus,
    Stage,
    StagePhase,
    set_condition,
    timestamp,
    transitions,
)
from reasoning_operator.api.stage_defs import definition
from reasoning_operator.api.transitions import CHILD_REJECTED as CHILD_REJECTED  # re-exported: its home is the API

#: The kubelet's reason for a container the kernel killed at its memory limit; a stage that failed so says it
#: in the run's Failed condition (the fix is the stage's resources.memory, not a retry).
OOM_KILLED = "OOMKilled"
TRANSIENT = "TransientApiError"
#: HTTP statuses that mean "this object will never be accepted as it is".
REFUSED = frozenset({400, 403, 413, 422})
#: Consecutive failed reconciles before the Stalled condition reports transient errors.
TRANSIENT_ATTEMPTS_BEFORE_CONDITION = 3


@dataclass(frozen=True)
class ApiFailure:
    """An apiserver error reduced to what a person needs: HTTP status, Status reason, fields, message."""

    status: int | None
    reason: str
    message: str
    fields: tuple[str, ...] = field(default_factory=tuple)

    @property
    def refused(self) -> bool:
        return self.status in REFUSED

    def describe(self) -> str:
        where = f" (field {', '.join(self.fields)})" if self.fields else ""
        code = f"{self.status} {self.reason}" if self.status else self.reason
        return f"{code}{where}: {self.message}"


def parse_failure(status: int | None, body: str | bytes | None, fallback: str = "") -> ApiFailure:
    """A metav1.Status body (or whatever came back) as an ApiFailure."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
    try:
        parsed: Any = json.loads(text) if text else {}
    except json.JSONDecodeError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    causes = (parsed.get("details") or {}).get("causes") or []
    fields = tuple(dict.fromkeys(str(c["field"]) for c in causes if isinstance(c, dict) and c.get("field")))
    message = str(parsed.get("message") or text or fallback or "no message")
    return ApiFailure(status, str(parsed.get("reason") or ("Error" if status else "NoResponse")), message, fields)


#: Pod-creation failures the Job controller reports (FailedCreate events) that retrying cannot fix.
_POD_REFUSALS = ("is forbidden", "is invalid", "violates PodSecurity", "exceeded quota")
#: ... except these, which pass on their own: a quota whose usage is not computed yet, a namespace going away.
_POD_HICCUPS = ("status unknown for quota", "because it is being terminated")


def pod_creation_refused(message: str) -> bool:
    """Whether a FailedCreate message is a refusal (Pod Security, quota, an invalid field) rather than a
    hiccup (a timeout, the apiserver restarting) that the Job controller's own retries will get past."""
    if any(marker in message for marker in _POD_HICCUPS):
        return False
    return any(marker in message for marker in _POD_REFUSALS)


@dataclass(frozen=True)
class ChildRejection:
    kind: str
    name: str
    stage: Stage | None
    failure: ApiFailure

    def message(self) -> str:
        return f"{self.kind} {self.name} was refused by the apiserver: {self.failure.describe()}"[:2000]


def stage_of(obj: dict[str, Any]) -> Stage | None:
    from .run import STAGE_LABEL

    value = ((obj.get("metadata") or {}).get("labels") or {}).get(STAGE_LABEL)
    return Stage(value) if value in {s.value for s in Stage} else None


def rejected_status(
    status: ReasoningRunStatus, rejection: ChildRejection, now: datetime, generation: int
) -> ReasoningRunStatus:
    """The run fails once, naming the child: a refused child is refused again on every retry."""
    out = status.deep_copy()
    stamp = timestamp(now)
    message = rejection.message()
    stage = rejection.stage or out.current_stage
    if stage is not None:
        stage_status = out.stages.get(stage)
        stage_status.phase = StagePhase.FAILED
        stage_status.message = message
        stage_status.completion_time = stage_status.completion_time or stamp
        out.conditions = set_condition(
            out.conditions, definition(stage).condition, False, CHILD_REJECTED, message, stamp, generation
        )
    out.failure_reason = message
    transitions.end_run(out, Phase.FAILED)
    transitions.run_conditions(out, stamp, generation, CHILD_REJECTED, message)  # Succeeded False, Failed True
    return out


def transient_status(
    status: ReasoningRunStatus, failure: ApiFailure, attempts: int, now: datetime, generation: int
) -> ReasoningRunStatus | None:
    """After a few failed attempts in a row, Stalled says so (the operator keeps retrying with backoff);
    None before that, or when the run is already finished."""
    if attempts < TRANSIENT_ATTEMPTS_BEFORE_CONDITION or status.phase in (Phase.SUCCEEDED, Phase.FAILED):
        return None
    out = status.deep_copy()
    message = f"{attempts} reconciles in a row failed on a transient apiserver error, retrying: {failure.describe()}"
    out.conditions = set_condition(
        out.conditions, ConditionType.STALLED, True, TRANSIENT, message[:1000], timestamp(now), generation
    )
    return out
