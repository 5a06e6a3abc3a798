"""Status for a run whose spec the apiserver accepted but the models reject (e.g. the CRD was edited or
an older schema is installed): say exactly which field, never act on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from reasoning_operator.api import ConditionType, Phase, ReasoningRunStatus, set_condition, timestamp


def describe(err: ValidationError) -> str:
    parts = []
    for item in err.errors():
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"spec.{where}: {item['msg']}")
    return "; ".join(parts)


def invalid_spec_status(obj: dict[str, Any], err: ValidationError, now: datetime) -> dict[str, Any]:
    raw = obj.get("status") or {}
    try:
        status = ReasoningRunStatus.model_validate(raw)
    except ValidationError:
        status = ReasoningRunStatus()
    generation = int(obj["metadata"].get("generation") or 1)
    stamp = timestamp(now)
    message = describe(err)
    status.phase = Phase.FAILED
    status.failure_reason = message
    status.progress = "invalid spec"
    status.observed_generation = generation
    for kind in (ConditionType.SUCCEEDED, ConditionType.FAILED):
        status.conditions = set_condition(
            status.conditions, kind, kind == ConditionType.FAILED, "InvalidSpec", message, stamp, generation
        )
    result: dict[str, Any] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    return result
