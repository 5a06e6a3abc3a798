"""Common base for every API model: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue
from pydantic.alias_generators import to_camel

GROUP = "reasoning-operator.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ReasoningRun"
PLURAL = "reasoningruns"
SINGULAR = "reasoningrun"
SHORT_NAMES = ["rr"]


class ApiModel(BaseModel):
    """Wire format is the Kubernetes one (camelCase); unknown fields are errors, never silently dropped."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict the apiserver and the job configs carry."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


IMMUTABLE = "is immutable once the run exists: create a new ReasoningRun to change it"


@dataclass(frozen=True)
class Rule:
    """A cross-field rule stated once: the CEL the apiserver checks at admission, and the same predicate in Python
    for configs that never pass an apiserver (local runs, job configs, flags laid over them)."""

    cel: str
    holds: Callable[[Any], bool]
    message: str
    field_path: str | None = None

    def entry(self) -> dict[str, JsonValue]:
        return cel(self.cel, self.message, **({"fieldPath": self.field_path} if self.field_path else {}))


def check_rules(model: Any, rules: Sequence[Rule]) -> None:
    """Raise the first broken rule's message (a model_validator's ValueError names the field)."""
    for rule in rules:
        if not rule.holds(model):
            raise ValueError(rule.message)


def section_config(path: str, immutable: bool = False, rules: Sequence[Rule] = ()) -> ConfigDict:
    """Config of a spec section: the ApiModel one plus its CEL rules (immutability first, if asked)."""
    validations: list[JsonValue] = [cel("self == oldSelf", f"{path} {IMMUTABLE}")] if immutable else []
    validations += [rule.entry() for rule in rules]
    if not validations:  # the apiserver drops an empty list: the served schema would differ from the file
        return ConfigDict(**ApiModel.model_config)
    return ConfigDict(**ApiModel.model_config, json_schema_extra={"x-kubernetes-validations": validations})


def cel(rule: str, message: str, **extra: str) -> dict[str, JsonValue]:
    """One `x-kubernetes-validations` entry; `message` names the field the rule guards."""
    return {"rule": rule, "message": message, **extra}
