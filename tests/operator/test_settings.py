"""The operator's settings: flags over the environment, read once, and a bad value named before anything starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from reasoning_operator.settings import OperatorSettings


def test_environment_as_the_chart_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONING_WORKERS", "32")
    monkeypatch.setenv("REASONING_NAMESPACES", "team-a, team-b,")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")
    settings = OperatorSettings()
    assert settings.workers == 32 and settings.watched == ["team-a", "team-b"]
    assert settings.kubeconfig == "/etc/kube/config"
    assert settings.resync_seconds == 10.0 and settings.metrics_port == 0


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONING_NAMESPACES", "team-a")
    monkeypatch.setenv("REASONING_RESYNC_SECONDS", "30")
    settings = OperatorSettings(namespaces=(), resync_seconds=2.5)
    assert settings.watched is None and settings.resync_seconds == 2.5


@pytest.mark.parametrize(("name", "value"), [("REASONING_WORKERS", "0"), ("REASONING_RESYNC_SECONDS", "-1")])
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("REASONING_").lower()):
        OperatorSettings()


def test_reasoning_operator_refuses_a_bad_setting_before_connecting() -> None:
    env = {**os.environ, "REASONING_WORKERS": "many"}
    proc = subprocess.run(
        [sys.executable, "-m", "reasoning_operator.cli", "operator", "-A", "--kubeconfig", "/nonexistent"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "workers" in proc.stderr and "many" in proc.stderr, proc.stderr
