"""The stage registry: one definition per stage, and every per-stage table the operator, the CLI and the
local runner used to keep is now read from it."""

from __future__ import annotations

from typing import Any

import pytest

from reasoning_operator.api import ConditionType, Phase, ReasoningRunSpec, ReasoningRunStatus, Stage
from reasoning_operator.api.contract import JOB_SUBCOMMANDS
from reasoning_operator.api.stage_defs import BY_STAGE, STAGES, StageKind, definition, pipeline
from reasoning_operator.cli import SUBCOMMANDS
from reasoning_operator.core import builders
from reasoning_operator.core.run import Run


def test_one_definition_per_stage_in_pipeline_order() -> None:
    assert [d.stage for d in STAGES] == list(Stage)
    assert set(BY_STAGE) == set(Stage) and all(definition(d.stage) is d for d in STAGES)
    assert len({d.phase for d in STAGES}) == len(STAGES) and len({d.condition for d in STAGES}) == len(STAGES)
    assert {d.phase for d in STAGES} < set(Phase) and {d.condition for d in STAGES} < set(ConditionType)


def test_export_is_the_optional_last_stage() -> None:
    assert [d.stage for d in pipeline(ReasoningRunSpec())] == [
        Stage.CURATION,
        Stage.TRAINING,
        Stage.SERVING,
        Stage.EVALUATION,
    ]
    with_export = ReasoningRunSpec.model_validate({"export": {"destination": "/workspace/out"}})
    assert pipeline(with_export)[-1].stage == Stage.EXPORT and len(pipeline(with_export)) == len(STAGES)


def test_the_two_kinds() -> None:
    assert [d.stage for d in STAGES if d.kind == StageKind.SERVICE] == [Stage.SERVING]
    for d in STAGES:
        # A Job reports a result into the status field named like its stage; the service reports none.
        assert (d.result is None) == (d.kind == StageKind.SERVICE)
        if d.result is not None:
            assert d.result.__name__ in str(ReasoningRunStatus.model_fields[d.stage.value].annotation)


def test_gpus_and_images_come_from_the_spec() -> None:
    spec = ReasoningRunSpec()
    assert {d.stage: d.gpus(spec) for d in STAGES} == {
        Stage.CURATION: 0,
        Stage.TRAINING: 1,
        Stage.SERVING: spec.serving.gpus,
        Stage.EVALUATION: 0,
        Stage.EXPORT: 0,
    }
    assert definition(Stage.EXPORT).image(spec) == spec.images.training  # the export runs in the training image
    assert definition(Stage.EXPORT).resources(spec) == spec.training.resources


def test_subcommands_are_the_definitions() -> None:
    assert {d.stage: d.subcommand for d in STAGES} == JOB_SUBCOMMANDS
    for d in STAGES:
        assert SUBCOMMANDS[d.subcommand] == (d.module, "main", d.help)
    assert list(SUBCOMMANDS)[2 : 2 + len(STAGES)] == [d.subcommand for d in STAGES]


def test_one_job_builder_for_the_one_shot_stages(make_run: Any) -> None:
    run = Run.from_object(make_run(spec={"export": {"destination": "/workspace/out"}}))
    for d in STAGES:
        if d.kind != StageKind.JOB:
            with pytest.raises(ValueError, match="not a Job"):
                builders.build_stage_job(run, d.stage)
            continue
        job = builders.build_stage_child(run, d.stage)
        assert job["kind"] == "Job" and job["metadata"]["name"] == run.child_name(d.stage)
        box = job["spec"]["template"]["spec"]["containers"][0]
        assert box["image"] == d.image(run.spec) and box["args"][0] == d.subcommand
    plain = Run.from_object(make_run())
    with pytest.raises(ValueError, match=r"no spec\.export"):
        builders.build_export_job(plain)


def test_stage_durations_are_exported_for_every_stage_the_run_has() -> None:
    from reasoning_operator import metrics

    status = ReasoningRunStatus.model_validate(
        {"stages": {"training": {"durationSeconds": 12.0}, "export": {"durationSeconds": 3.0}}}
    )
    metrics.observe_status("ns", "stage-defs-run", status)
    seconds = {
        stage.value: metrics.REGISTRY.get_sample_value(
            "reasoning_stage_duration_seconds", {"namespace": "ns", "run": "stage-defs-run", "stage": stage.value}
        )
        for stage in Stage
    }
    assert seconds == {"curation": None, "training": 12.0, "serving": None, "evaluation": None, "export": 3.0}
    assert ReasoningRunStatus().stages.export is None  # reading the registry gave no run an export status
    metrics.forget("ns", "stage-defs-run")
