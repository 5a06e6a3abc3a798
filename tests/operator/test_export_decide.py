"""spec.export in the pure core: after evaluation the run goes on to an export Job (its result in status),
serving is let go while it runs, and a run without spec.export never shows an export stage."""

from __future__ import annotations

import json
from typing import Any

from tests.operator.test_decide import CURATION, EVALUATION, TRAINING, job, kinds, pod, step

from reasoning_operator.api import Phase
from reasoning_operator.core import builders
from reasoning_operator.core.run import Run

EXPORT = {"destination": "s3://models/demo", "mergedPath": "s3://models/demo/merged", "files": 9, "bytes": 1234}
READY = {
    "metadata": {"name": "demo-serving"},
    "spec": {"replicas": 1},
    "status": {"readyReplicas": 1, "availableReplicas": 1},
}
SPEC = {"export": {"destination": "s3://models/demo", "credentialsSecret": "s3-creds"}}


def _evaluated(obj: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    jobs = [job(f"demo-{s}", s, "complete") for s in ("curation", "training", "evaluation")]
    results = {"curation": CURATION, "training": TRAINING, "evaluation": EVALUATION}
    pods = [pod(f"{s}-1", s, "Succeeded", json.dumps(r)) for s, r in results.items()]
    _, obj = step(obj)
    for count in (1, 2):
        _, obj = step(obj, jobs=jobs[:count], pods=pods[:count])
    _, obj = step(obj, jobs=jobs[:2], pods=pods[:2], deployment=READY, service={"metadata": {}})
    return jobs, pods, obj


def test_export_runs_after_evaluation_and_reports_its_result(make_run: Any) -> None:
    jobs, pods, obj = _evaluated(make_run(spec=SPEC))
    plan, obj = step(obj, jobs=jobs, pods=pods, deployment=READY, service={"metadata": {}})
    assert plan.status.phase == Phase.EXPORTING and plan.status.current_stage == "export"
    assert ("Job", "demo-export") in kinds(plan.create)
    assert ("Deployment", "demo-serving") in plan.delete  # evaluation is over: the export needs no server
    assert plan.status.headline_accuracy == "gpqa_diamond/on: 0.410"

    jobs += [job("demo-export", "export", "complete")]
    pods += [pod("x-1", "export", "Succeeded", json.dumps(EXPORT))]
    plan, obj = step(obj, jobs=jobs, pods=pods)
    assert plan.status.phase == Phase.SUCCEEDED
    assert plan.status.export is not None and plan.status.export.merged_path == "s3://models/demo/merged"
    assert plan.status.stages.export is not None and plan.status.stages.export.phase == "Succeeded"
    assert {c.type: c.status for c in plan.status.conditions}["Exported"] == "True"
    assert "exported to s3://models/demo" in next(e.message for e in plan.events if e.reason == "RunSucceeded")


def test_a_failed_export_fails_the_run(make_run: Any) -> None:
    jobs, pods, obj = _evaluated(make_run(spec=SPEC))
    _, obj = step(obj, jobs=jobs, pods=pods)
    plan, _ = step(obj, jobs=[*jobs, job("demo-export", "export", "failed")], pods=pods)
    assert plan.status.phase == Phase.FAILED and plan.status.stages.export is not None
    assert plan.status.stages.export.phase == "Failed"


def test_without_export_nothing_changes(make_run: Any) -> None:
    jobs, pods, obj = _evaluated(make_run())
    plan, obj = step(obj, jobs=jobs, pods=pods, deployment=READY, service={"metadata": {}})
    assert plan.status.phase == Phase.SUCCEEDED and plan.status.stages.export is None
    assert "export" not in obj["status"]["stages"] and "export" not in obj["status"]
    assert "export.yaml" not in builders.build_config_map(Run.from_object(obj), "http://s:8000")["data"]


def test_export_job_manifest(make_run: Any) -> None:
    run = Run.from_object(make_run(spec={**SPEC, "model": {"hubTokenSecret": {"name": "hub"}}}))
    box = builders.build_export_job(run)["spec"]["template"]["spec"]["containers"][0]
    assert box["image"] == run.spec.images.training and box["args"] == [
        "export",
        "--config",
        "/etc/reasoning/export.yaml",
    ]
    assert box["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert "nvidia.com/gpu" not in box["resources"]["limits"]
    assert any(e["name"] == "HF_TOKEN" for e in box["env"])  # s3: the model's hub token stays
    hub = Run.from_object(make_run(spec={"export": {"destination": "hf://acme/m", "credentialsSecret": "up"},
                                         "model": {"hubTokenSecret": {"name": "hub"}}}))  # fmt: skip
    hub_box = builders.build_export_job(hub)["spec"]["template"]["spec"]["containers"][0]
    assert not any(e["name"] == "HF_TOKEN" for e in hub_box["env"])  # the upload's token is the export Secret's
    assert hub_box["envFrom"] == [{"secretRef": {"name": "up"}}]
