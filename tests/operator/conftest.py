"""Builders for ReasoningRun objects as the apiserver would return them (plain dicts, no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from reasoning_operator.api import API_VERSION, KIND


def run_object(
    name: str = "demo", spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, generation: int = 1
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": "ns", "uid": "0123456789abcdef", "generation": generation},
        "spec": spec or {},
    }
    if status is not None:
        obj["status"] = status
    return obj


@pytest.fixture
def make_run() -> Any:
    return run_object
