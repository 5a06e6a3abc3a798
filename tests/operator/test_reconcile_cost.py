"""What a reconcile no longer spends CPU on must not change what it does: kopf's diff-base is off
(handlers.NoDiffBase), safe only while no handler needs it; a spec text is validated once (core.run)."""

from __future__ import annotations

import kopf
import pytest
from pydantic import ValidationError

from reasoning_operator import handlers
from reasoning_operator.api import GROUP, PLURAL, VERSION
from reasoning_operator.core import run as run_module


def test_no_registered_handler_detects_changes_so_an_empty_diff_base_loses_nothing() -> None:
    registry = kopf.get_default_registry()
    run = kopf.Resource(GROUP, VERSION, PLURAL)
    assert registry._watching.has_handlers(resource=run)  # kopf.on.event: the one handler
    assert not registry._changing.has_handlers(resource=run)  # on.create/update/resume/delete
    assert not registry._spawning.has_handlers(resource=run)  # daemons, timers
    storage = handlers.NoDiffBase()
    body = kopf.Body({"metadata": {"name": "r"}, "spec": {"model": {"name": "x"}}, "status": {}})
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None


def test_a_spec_is_validated_once_per_text_and_an_invalid_one_is_never_cached() -> None:
    """Run.from_object reuses the model of a spec text seen before (the same text validates the same), and a
    changed text is validated afresh."""
    first = run_module.parsed_spec({"model": {"name": "m-a"}})
    assert run_module.parsed_spec({"model": {"name": "m-a"}}) is first
    other = run_module.parsed_spec({"model": {"name": "m-b"}})
    assert other is not first and other.model.name == "m-b"
    with pytest.raises(ValidationError):
        run_module.parsed_spec({"model": {"name": "m-a"}, "nonsense": 1})
    with pytest.raises(ValidationError):  # still raises: a failure leaves nothing behind
        run_module.parsed_spec({"model": {"name": "m-a"}, "nonsense": 1})
