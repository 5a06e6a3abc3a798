"""The stage registry: one definition per stage, and every per-stage table the operator, the CLI and the
local runner used to keep is now read from it."""

from __future__ import annotations

import dataclasses
import types
from typing import Any

import pytest

from reasoning_operator.api import (
    ApiModel,
    ConditionType,
    Phase,
    ReasoningRunSpec,
    ReasoningRunStatus,
    Stage,
    stage_codegen,
)
from reasoning_operator.api.contract import JOB_SUBCOMMANDS
from reasoning_operator.api.stage_defs import BY_STAGE, STAGES, StageDef, StageKind, definition, pipeline
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


def test_the_typed_members_are_generated_from_the_definitions() -> None:
    """stage_members.py is what `reasoning crds` writes from STAGES (the gate's `reasoning crds --check` too)."""
    assert stage_codegen.stale_members() is None
    assert [(d.stage.value, d.phase.value, d.condition.value) for d in STAGES] == [
        (d.name, d.phase_name, d.condition_name) for d in STAGES
    ]


def _fifth_stage() -> StageDef:
    """A hypothetical fifth stage (the paper's pass-rate difficulty filter), as its module would define it."""

    class DifficultyResult(ApiModel):
        samples_kept: int = 0

    DifficultyResult.__module__ = "reasoning_operator.api.results"  # where its result model would live
    return StageDef(
        name="difficulty",
        kind=StageKind.JOB,
        phase_name="Filtering",
        condition_name="DifficultyFiltered",
        subcommand="filter-difficulty",
        module="reasoning_jobs.difficulty.cli",
        help="Difficulty filter: keep the samples the base model does not already solve.",
        image=lambda spec: spec.images.curation,
        resources=lambda spec: spec.curation.resources,
        result=DifficultyResult,
    )


def test_a_fifth_stage_is_its_definition_and_a_registry_entry() -> None:
    """Rendering the members for STAGES with one more definition gives every typed member and status field it
    needs, in pipeline order: nothing else is declared by hand."""
    fifth = _fifth_stage()
    stages = (STAGES[0], fifth, *STAGES[1:])
    text = stage_codegen.render_members(stages)
    assert "from .results import CurationResult, DifficultyResult, " in text
    module = types.ModuleType("reasoning_operator.api._fifth_stage_members")
    module.__package__ = "reasoning_operator.api"
    module.__dict__["DifficultyResult"] = fifth.result  # the import its module would satisfy
    code = text.replace("DifficultyResult, ", "")
    exec(compile(code, module.__name__, "exec"), module.__dict__)
    assert [s.value for s in module.Stage] == ["curation", "difficulty", "training", "serving", "evaluation", "export"]
    assert list(module.Phase)[1:3] == [module.Phase.CURATING, module.Phase.FILTERING]
    assert module.ConditionType.DIFFICULTY_FILTERED == "DifficultyFiltered"
    assert list(module.StagesStatus.model_fields) == [s.value for s in module.Stage]
    module.StageResults.model_rebuild(_types_namespace=module.__dict__)  # it is in no sys.modules
    result = module.StageResults.model_validate({"difficulty": {"samplesKept": 3}})
    assert result.difficulty.samples_kept == 3 and result.training is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "training"}, "share the name"),
        ({"phase_name": "Training"}, "share the phase"),
        ({"condition_name": "Succeeded"}, "share the condition"),
        ({"name": "Difficulty"}, "lower-case"),
        ({"phase_name": "filtering"}, "CamelCase"),
    ],
)
def test_a_definition_that_would_clash_is_refused(change: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stage_codegen.render_members((*STAGES, dataclasses.replace(_fifth_stage(), **change)))
