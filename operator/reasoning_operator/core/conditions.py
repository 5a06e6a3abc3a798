"""metav1.Condition bookkeeping: lastTransitionTime moves only when the status really changes."""

from __future__ import annotations

from reasoning_operator.api import Condition, ConditionType


def set_condition(
    conditions: list[Condition],
    kind: ConditionType,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    generation: int,
) -> list[Condition]:
    value = "Unknown" if status is None else ("True" if status else "False")
    existing = next((c for c in conditions if c.type == kind.value), None)
    transition = existing.last_transition_time if existing is not None and existing.status == value else now
    updated = Condition(
        type=kind.value,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    if existing is None:
        return [*conditions, updated]
    return [updated if c.type == kind.value else c for c in conditions]


def get_condition(conditions: list[Condition], kind: ConditionType) -> Condition | None:
    return next((c for c in conditions if c.type == kind.value), None)
