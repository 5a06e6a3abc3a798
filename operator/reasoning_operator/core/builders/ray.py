"""The curation stage on a Ray cluster that KubeRay runs: one ``RayJob`` (ray.io/v1) when spec.curation.cluster
is set.

Why a RayJob and not a RayCluster plus our own submitter Job: the stage's lifecycle is a batch one (start a
cluster, run one driver, keep its outcome, tear the cluster down), and that is exactly what a RayJob is.
KubeRay then owns the parts a home-made pair would have to re-implement: waiting for the cluster before
submitting, idempotent submission on a submitter retry (the submission id), deleting the cluster when the job
ends (``shutdownAfterJobFinishes``), retrying the whole cluster within ``backoffLimit``, and one status
(``jobDeploymentStatus``/``jobStatus``) the operator reads like a Job's conditions. Deleting the ReasoningRun
deletes the RayJob (owner reference), and KubeRay's owner references take the cluster with it.

The result: the driver runs on the head (``ray job submit``), so its ``/dev/termination-log`` is not any pod's
termination message the operator sees, and the head pod is deleted with the cluster. The submitter pod is
ours to shape (a command of our own is kept by KubeRay), so after the job it reads the ``summary.json`` the
driver wrote on the shared claim and writes it, compact, as its own termination message: the same
CurationResult the single-pod Job reports, read by the same code.

Ray's token authentication stays on (Ray 2.60's default; off, its job API would run any code sent from the pod
network), through KubeRay v1.6.0's own ``authOptions`` (mode ``token``, which needs ``rayVersion`` >= 2.52):
KubeRay creates a per-cluster Secret holding a random token (owned by the RayCluster, so deleted with it),
sets ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN`` (from that Secret) on the head, the workers, its
``wait-gcs-ready`` init containers and the submitter, and its own controller reads the same Secret to poll
the dashboard. The operator never reads or writes a Secret (it holds no such rights), and no container of
ours makes a token.
"""

from __future__ import annotations

import shlex
from typing import Any

from reasoning_operator.api import CurationCluster, Stage
from reasoning_operator.api.contract import PROGRAM, SUMMARY_FILE, TERMINATION_MESSAGE_PATH, job_args
from reasoning_operator.api.stage_defs import definition

from ..run import Run
from ..stage_cache import output_dirs
from .jobs import build_stage_job
from .pod import container, pod_security, resources, volumes

RAY_API_VERSION = "ray.io/v1"
#: The curation image's Ray (uv.lock): KubeRay checks it before it enables token auth (2.52 at least).
RAY_VERSION = "2.60.0"
WORKER_GROUP = "workers"
#: How long KubeRay keeps a finished RayJob's cluster before deleting it (logs for a post-mortem).
TTL_AFTER_FINISHED_SECONDS = 300
#: Whole-cluster retries of a failed job (a lost head fails the job; KubeRay then starts a new cluster), the
#: same budget as the single-pod curation Job's backoff limit.
BACKOFF_LIMIT = 2
SUBMITTER_BACKOFF_LIMIT = 2
#: How long a submitter waits for the head's job API to accept connections before it tries anyway.
HEAD_WAIT_SECONDS = 180

#: The submitter's script. KubeRay's own (common/job.go) submits only when the id is unknown, then follows the
#: logs; ours does the same, then asks the job's status through Ray's SDK (`ray job status` prints it in
#: words, "Job 'x' succeeded", once terminal) and on SUCCEEDED hands summary.json over as the termination
#: message (compact JSON, as the job CLI writes it). Ray's token comes from KubeRay's env (``authOptions``).
#: First it waits (up to HEAD_WAIT_SECONDS) for the head's job API to accept connections: after a lost head,
#: KubeRay recreates it in the same cluster, and a submitter retry that fails at once while it starts spends
#: the retry budget (seen on the real node: two of its three pods). ``{entrypoint}``, ``{summary}``,
#: ``{termination}`` and ``{head_wait}`` are filled in.
_SUBMIT = """\
set -e
ADDR="http://$RAY_DASHBOARD_ADDRESS"
HEAD="$RAY_DASHBOARD_ADDRESS"
for _ in $(seq {head_wait}); do
  (exec 3<>"/dev/tcp/${{HEAD%:*}}/${{HEAD##*:}}") 2>/dev/null && break
  sleep 2
done
if ! ray job status --address "$ADDR" "$RAY_JOB_SUBMISSION_ID" >/dev/null 2>&1; then
  ray job submit --address "$ADDR" --submission-id "$RAY_JOB_SUBMISSION_ID" --no-wait -- {entrypoint}
fi
ray job logs --address "$ADDR" --follow "$RAY_JOB_SUBMISSION_ID" || true
python -c 'import os, sys; from ray.job_submission import JobSubmissionClient as C; \\
  s = C(sys.argv[1]).get_job_status(os.environ["RAY_JOB_SUBMISSION_ID"]); print("job status:", s); \\
  sys.exit(s != "SUCCEEDED")' "$ADDR"
python -c 'import json, sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), \\
  separators=(",", ":"), sort_keys=True))' {summary} > {termination}
"""


def curation_entrypoint() -> list[str]:
    """The same curation CLI and stage config as the single-pod Job."""
    return [PROGRAM, *job_args(Stage.CURATION)]


def _ray_container(run: Run, res: dict[str, Any], name: str) -> dict[str, Any]:
    """The curation container, less command/args: KubeRay writes ``ray start`` for head and workers."""
    spec = run.spec
    base = container(
        run,
        Stage.CURATION,
        spec.images.curation,
        [],
        res,
        shm=True,  # Ray's object store lives in /dev/shm
        env_from_secret=spec.dataset.credentials_secret,
    )
    base.pop("command")
    base.pop("args")
    base["name"] = name
    return base


def _pod_template(run: Run, containers: list[dict[str, Any]], restart: str | None = None) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        "containers": containers,
        "volumes": volumes(run, shm=True),
    }
    if restart is not None:
        pod["restartPolicy"] = restart
    return {"metadata": {"labels": run.labels(Stage.CURATION)}, "spec": pod}


#: The submitter mounts only what it reads: the summary on the run's volume, or on the cache claim (spec.cache).
_SUBMITTER_VOLUMES = ("workspace", "scratch", "stage-cache")


def _submitter(run: Run) -> dict[str, Any]:
    curated = output_dirs(run)[0] or f"{run.run_dir}/curated"
    summary = f"{curated}/{SUMMARY_FILE}"
    script = _SUBMIT.format(
        entrypoint=shlex.join(curation_entrypoint()),
        summary=shlex.quote(summary),
        termination=shlex.quote(TERMINATION_MESSAGE_PATH),
        head_wait=HEAD_WAIT_SECONDS // 2,
    )
    sub = _ray_container(run, {"requests": {"cpu": "200m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}, "submit")
    sub.pop("envFrom", None)
    sub["volumeMounts"] = [m for m in sub["volumeMounts"] if m["name"] in _SUBMITTER_VOLUMES]
    sub["command"] = ["bash", "-c", script]
    template = _pod_template(run, [sub], restart="Never")
    template["spec"]["volumes"] = [v for v in template["spec"]["volumes"] if v["name"] in _SUBMITTER_VOLUMES]
    return template


def build_curation_rayjob(run: Run) -> dict[str, Any]:
    cluster: CurationCluster | None = run.spec.curation.cluster
    if cluster is None:
        raise ValueError("spec.curation.cluster is not set: curation runs as a Job")
    name = run.child_name(Stage.CURATION)
    head = _ray_container(run, resources(cluster.head_resources), "ray-head")
    worker = _ray_container(run, resources(cluster.worker_resources), "ray-worker")
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": run.metadata(name, Stage.CURATION),
        "spec": {
            "entrypoint": shlex.join(curation_entrypoint()),
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_SECONDS,
            "backoffLimit": BACKOFF_LIMIT,
            "submitterConfig": {"backoffLimit": SUBMITTER_BACKOFF_LIMIT},
            "submitterPodTemplate": _submitter(run),
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                # KubeRay makes the cluster's token Secret and gives it to every Ray container and itself.
                "authOptions": {"mode": "token"},
                "headGroupSpec": {
                    # No blocks on the head: it holds the GCS, the dashboard and the driver.
                    "rayStartParams": {"num-cpus": "0"},
                    "template": _pod_template(run, [head]),
                },
                "workerGroupSpecs": [
                    {
                        "groupName": WORKER_GROUP,
                        "replicas": cluster.workers,
                        "minReplicas": cluster.workers,
                        "maxReplicas": cluster.workers,
                        "rayStartParams": {},
                        "template": _pod_template(run, [worker]),
                    }
                ],
            },
        },
    }


def build_stage_child(run: Run, stage: Stage) -> dict[str, Any]:
    """A one-shot stage's child: a RayJob where its definition finds a KubeRay cluster in the spec (curation
    with spec.curation.cluster, the one stage that has one), else its single-pod Job."""
    if definition(stage).ray_cluster(run.spec) is None:
        return build_stage_job(run, stage)
    if stage != Stage.CURATION:
        raise ValueError(f"build_stage_child: no RayJob for the {stage.value} stage")
    return build_curation_rayjob(run)


def build_curation(run: Run) -> dict[str, Any]:
    """The curation child: a RayJob when spec.curation.cluster is set, else the single-pod Job as before."""
    return build_stage_child(run, Stage.CURATION)
