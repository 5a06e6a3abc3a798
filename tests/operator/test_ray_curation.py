"""spec.curation.cluster: the curation child becomes a KubeRay RayJob (pure builder and decide); without it,
nothing changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from reasoning_operator.api import CurationCluster, CurationStageConfig, Phase, StagePhase, stage_configs
from reasoning_operator.core import builders, stage_cache
from reasoning_operator.core.decide import decide
from reasoning_operator.core.observe import observe, ray_job_obs
from reasoning_operator.core.run import Run

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
CLUSTER = {
    "workers": 3,
    "workerResources": {"cpu": "6", "memory": "24Gi"},
    "headResources": {"cpu": "1", "memory": "4Gi"},
}
CURATION = {"samplesRead": 100, "samplesWritten": 80, "dropped": {"language": 20}}
LABELS = {"reasoning-operator.dev/stage": "curation"}


def _run(make_run: Any, cluster: dict[str, Any] | None = CLUSTER) -> Run:
    return Run.from_object(make_run(spec={"curation": {"cluster": cluster}} if cluster else {}))


def _pods(ray_job: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = ray_job["spec"]["rayClusterSpec"]
    return [
        cluster["headGroupSpec"]["template"]["spec"],
        *(g["template"]["spec"] for g in cluster["workerGroupSpecs"]),
        ray_job["spec"]["submitterPodTemplate"]["spec"],
    ]


def test_without_a_cluster_curation_stays_the_single_pod_job(make_run: Any) -> None:
    run = _run(make_run, cluster=None)
    assert builders.build_curation(run) == builders.build_curation_job(run)
    assert builders.build_curation(run)["kind"] == "Job"
    with pytest.raises(ValueError, match=r"spec\.curation\.cluster"):
        builders.build_curation_rayjob(run)


def test_the_ray_job_runs_the_same_cli_and_config_on_a_sized_cluster(make_run: Any) -> None:
    run = _run(make_run)
    rj = builders.build_curation(run)
    assert (rj["apiVersion"], rj["kind"], rj["metadata"]["name"]) == ("ray.io/v1", "RayJob", "demo-curation")
    assert rj["metadata"]["ownerReferences"][0]["uid"] == "0123456789abcdef"  # deleting the run deletes it
    job_args = builders.build_curation_job(run)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert rj["spec"]["entrypoint"] == "reasoning " + " ".join(job_args)
    assert rj["spec"]["shutdownAfterJobFinishes"] is True and rj["spec"]["ttlSecondsAfterFinished"] > 0
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]
    (workers,) = rj["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert workers["replicas"] == workers["minReplicas"] == workers["maxReplicas"] == 3
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "6", "memory": "24Gi"}
    assert head["template"]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "4Gi"}
    assert head["rayStartParams"]["num-cpus"] == "0"
    for pod in _pods(rj)[:2]:
        (c,) = pod["containers"]
        assert c["image"] == run.spec.images.curation
        assert "command" not in c  # KubeRay writes `ray start`
        assert {"workspace", "config", "dshm"} <= {m["name"] for m in c["volumeMounts"]}
    assert builders.build_curation(run) == rj  # pure and deterministic


def test_the_submitter_hands_the_summary_over_as_its_termination_message(make_run: Any) -> None:
    run = _run(make_run)
    (sub,) = builders.build_curation(run)["spec"]["submitterPodTemplate"]["spec"]["containers"]
    script = sub["command"][-1]  # a command of our own: KubeRay keeps it (configureSubmitterContainer)
    assert '--submission-id "$RAY_JOB_SUBMISSION_ID"' in script
    assert f"{run.run_dir}/curated/summary.json" in script and "/dev/termination-log" in script
    assert script.index('s != "SUCCEEDED"') < script.index("/dev/termination-log")


def test_every_ray_pod_satisfies_restricted_pod_security(make_run: Any) -> None:
    for pod in _pods(builders.build_curation(_run(make_run))):
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["containers"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_head_has_its_token_writer_among_the_checked_containers(make_run: Any) -> None:
    head = _pods(builders.build_curation(_run(make_run)))[0]
    assert [c["name"] for c in head["initContainers"]] == ["ray-auth-token"]


def test_every_ray_container_has_scratch_space(make_run: Any) -> None:
    for c in _ray_containers(builders.build_curation(_run(make_run))):
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_the_cluster_needs_one_worker_at_least() -> None:
    with pytest.raises(ValidationError):
        CurationCluster(workers=0)


def test_the_job_config_says_it_runs_on_a_cluster(make_run: Any) -> None:
    run = _run(make_run)
    config = stage_configs(run.spec, run.run_dir, "http://x:8000").curation
    again = CurationStageConfig.model_validate(config.to_wire())
    assert again.curation.cluster == CurationCluster.model_validate(CLUSTER)


def _ray_job(deployment: str | None, job_status: str | None = None, **extra: Any) -> dict[str, Any]:
    status = {k: v for k, v in {"jobDeploymentStatus": deployment, "jobStatus": job_status}.items() if v}
    return {"metadata": {"name": "demo-curation", "labels": LABELS}, "status": status | extra}


def _submitter_pod(message: str | None) -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, "message": message}} if message else {"terminated": {"exitCode": 0}}
    return {
        "metadata": {"name": "demo-curation-abcde", "creationTimestamp": "2026-11-27T11:00:01Z", "labels": LABELS},
        "status": {"phase": "Succeeded", "containerStatuses": [{"state": state}]},
    }


def _step(run: Run, ray_jobs: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None) -> Any:
    observed = observe(
        claim=None, config_map=None, jobs=[], pods=pods or [], deployment=None, service=None, ray_jobs=ray_jobs
    )
    return decide(run, observed, NOW)


def test_decide_creates_the_ray_job_once_and_reads_its_status(make_run: Any) -> None:
    run = _run(make_run)
    first = _step(run, [])
    assert [o["kind"] for o in first.create if o["metadata"]["name"] == "demo-curation"] == ["RayJob"]
    running = _step(run, [_ray_job("Running", "RUNNING")])
    assert not [o for o in running.create if o["kind"] in ("RayJob", "Job")]
    assert running.status.stages.curation.phase == StagePhase.RUNNING
    done = _step(run, [_ray_job("Complete", "SUCCEEDED")], [_submitter_pod(json.dumps(CURATION))])
    assert done.status.stages.curation.phase == StagePhase.SUCCEEDED
    assert done.status.curation is not None and done.status.curation.samples_written == 80
    assert [o["kind"] for o in done.create if o["metadata"]["name"] == "demo-training"] == ["Job"]


def test_a_failed_ray_job_fails_the_run_with_kuberays_reason(make_run: Any) -> None:
    failed = _ray_job("Failed", "FAILED", reason="AppFailed", message="driver exited 1")
    plan = _step(_run(make_run), [failed])
    assert plan.status.phase == Phase.FAILED
    assert "AppFailed" in (plan.status.failure_reason or "") and "driver exited 1" in (plan.status.failure_reason or "")


def test_a_succeeded_ray_job_without_a_result_is_not_a_silent_success(make_run: Any) -> None:
    plan = _step(_run(make_run), [_ray_job("Complete", "SUCCEEDED")], [_submitter_pod(None)])
    assert plan.status.stages.curation.phase == StagePhase.FAILED
    assert "empty termination message" in (plan.status.stages.curation.message or "")


@pytest.mark.parametrize(
    ("deployment", "job_status", "complete", "failed"),
    [
        ("Initializing", None, False, False),
        ("Running", "RUNNING", False, False),
        ("Retrying", "FAILED", False, False),  # KubeRay is within its backoffLimit: not final
        ("Complete", "SUCCEEDED", True, False),
        ("Complete", "STOPPED", False, True),
        ("Failed", "FAILED", False, True),
        ("ValidationFailed", None, False, True),
    ],
)
def test_ray_job_states(deployment: str, job_status: str | None, complete: bool, failed: bool) -> None:
    obs = ray_job_obs(_ray_job(deployment, job_status))
    assert (obs.complete, obs.failed_final) == (complete, failed)


@pytest.mark.parametrize("claim", ["shared-cache", "demo-data"])
def test_with_the_stage_cache_the_submitter_reads_the_summary_where_curation_writes_it(
    make_run: Any, claim: str
) -> None:
    """spec.cache moves curation's output to the cache claim (its own, or a subPath of the run's claim): the
    submitter must mount that claim and read the summary from the directory the curation config names."""
    run = Run.from_object(
        make_run(spec={"curation": {"cluster": CLUSTER}, "cache": {"enabled": True, "claimName": claim}})
    )
    configs = stage_configs(run.spec, run.run_dir, "http://x", curated_dir=stage_cache.output_dirs(run)[0])
    assert configs.curation is not None
    curated = str(configs.curation.output_dir)
    assert curated.startswith("/cache/curation/")
    pod = builders.build_curation(run)["spec"]["submitterPodTemplate"]["spec"]
    (sub,) = pod["containers"]
    assert f"{curated}/summary.json" in sub["command"][-1]
    mounted = {m["mountPath"]: m["name"] for m in sub["volumeMounts"]}
    assert "/cache" in mounted and mounted["/cache"] in {v["name"] for v in pod["volumes"]}


def _ray_containers(ray_job: dict[str, Any]) -> list[dict[str, Any]]:
    """Head, workers and submitter: every container that talks to Ray."""
    return [c for pod in _pods(ray_job) for c in pod["containers"]]


def test_head_workers_and_submitter_share_one_token_file_on_the_runs_claim(make_run: Any) -> None:
    run = _run(make_run)
    rj = builders.build_curation(run)
    path = f"{run.run_dir}/ray/auth_token"
    for c in _ray_containers(rj):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert (env["RAY_AUTH_MODE"], env["RAY_AUTH_TOKEN_PATH"]) == ("token", path), c["name"]
        assert "RAY_AUTH_TOKEN" not in env  # the token itself never passes through the operator
        workspace = next(m for m in c["volumeMounts"] if m["name"] == "workspace")
        assert path.startswith(workspace["mountPath"] + "/") and "subPath" not in workspace
    head = rj["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (writer,) = head["initContainers"]
    assert writer["image"] == run.spec.images.curation
    assert writer["command"][:2] == ["python", "-c"] and writer["command"][-1] == path
    assert [m["name"] for m in writer["volumeMounts"]] == ["workspace"]
    assert {v["name"]: v for v in head["volumes"]}["workspace"]["persistentVolumeClaim"] == {
        "claimName": run.claim_name
    }
    assert "env" not in writer and "envFrom" not in writer  # no Secret, no dataset credentials


def test_the_token_writer_writes_a_private_token_once(make_run: Any, tmp_path: Any) -> None:
    """The init container's own python program, run here: 0600, 64 hex digits, kept on a second run (a KubeRay
    retry starts a new head on the same claim)."""
    import subprocess
    import sys

    run = _run(make_run)
    head = builders.build_curation(run)["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    command = head["initContainers"][0]["command"]
    path = tmp_path / "ray" / "auth_token"
    subprocess.run([sys.executable, *command[1:-1], str(path)], check=True)
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    subprocess.run([sys.executable, *command[1:-1], str(path)], check=True)
    assert path.read_text() == token and sorted(p.name for p in path.parent.iterdir()) == ["auth_token"]
