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
network). KubeRay v1.5.0 has no ``authOptions`` to share a token, and a Secret would need the operator to hold
Secret rights it never has, so the token lives on the run's own claim, which only the run's pods mount: the
head's init container (the curation image, the same restricted security context) writes 32 random bytes,
hex, to ``{run_dir}/ray/auth_token`` (mode 0600, the pods' uid) unless the file is there, so a KubeRay retry
keeps it. Head, workers and submitter set ``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` to that file;
Ray's C++ token loader reads it for ``ray start`` (GCS, raylet, dashboard) and the ``ray job`` CLI/SDK alike.
Workers need no wait of their own: KubeRay's ``wait-gcs-ready`` init container copies the worker's env and
mounts, and the GCS is up only after the head's init container wrote the file. The submitter is created
once the head is ready, so the file is there; it still waits briefly for it, for a shared filesystem's
delayed visibility, then fails with a clear message. The randomness is in the container, never here.

tests/operator/test_ray_token.py checks this against a real local Ray 2.60 head: the submitter script with
this env submits and hands the summary over; without a token or with a wrong one the dashboard refuses it.

Not solved by this: KubeRay v1.5.0's own controller reads the job's status from the dashboard without a
token, is refused, and so marks the RayJob Failed 30 s after the submitter finished. KubeRay v1.6.0's
``authOptions`` (mode token) fixes that with a Secret KubeRay owns; it sets RAY_AUTH_TOKEN, which Ray's loader
prefers to our path, only where a container lacks it. See the README.
"""

from __future__ import annotations

import shlex
from typing import Any

from reasoning_operator.api import CurationCluster, Stage
from reasoning_operator.api.contract import PROGRAM, SUMMARY_FILE, TERMINATION_MESSAGE_PATH, job_args
from reasoning_operator.api.stage_defs import definition

from ..run import WORKSPACE, Run
from ..stage_cache import output_dirs
from .jobs import build_stage_job
from .pod import container, container_security, pod_security, resources, volumes

RAY_API_VERSION = "ray.io/v1"
WORKER_GROUP = "workers"
#: How long KubeRay keeps a finished RayJob's cluster before deleting it (logs for a post-mortem).
TTL_AFTER_FINISHED_SECONDS = 300
#: Whole-cluster retries of a failed job (a lost head fails the job; KubeRay then starts a new cluster), the
#: same budget as the single-pod curation Job's backoff limit.
BACKOFF_LIMIT = 2
SUBMITTER_BACKOFF_LIMIT = 2

#: The submitter's script. KubeRay's own (common/job.go) submits only when the id is unknown, then follows the
#: logs; ours does the same, then asks the job's status through Ray's SDK (`ray job status` prints it in
#: words, "Job 'x' succeeded", once terminal) and on SUCCEEDED hands summary.json over as the termination
#: message (compact JSON, as the job CLI writes it). It first waits (60 s at most) for the token file it is
#: pointed at. ``{entrypoint}``, ``{summary}`` and ``{termination}`` are filled in.
_SUBMIT = """\
set -e
if [ -n "${{RAY_AUTH_TOKEN_PATH:-}}" ]; then
  for _ in $(seq 30); do [ -s "$RAY_AUTH_TOKEN_PATH" ] && break; sleep 2; done
  [ -s "$RAY_AUTH_TOKEN_PATH" ] || {{ echo "no Ray auth token at $RAY_AUTH_TOKEN_PATH" >&2; exit 1; }}
fi
ADDR="http://$RAY_DASHBOARD_ADDRESS"
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


#: Writes the run's Ray token once (os.link refuses an existing name, so a second head keeps the first
#: token, and a reader never sees a half-written file). ``sys.argv[1]`` is the token's path.
_WRITE_TOKEN = """\
import os, secrets, sys
path = sys.argv[1]
os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
if not os.path.exists(path):
    tmp = f"{path}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
"""

TOKEN_INIT_CONTAINER = "ray-auth-token"


def token_path(run: Run) -> str:
    """The run's Ray auth token, on its own claim (mounted by its pods only)."""
    return f"{run.run_dir}/ray/auth_token"


def token_env(run: Run) -> list[dict[str, Any]]:
    return [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {"name": "RAY_AUTH_TOKEN_PATH", "value": token_path(run)},
    ]


def _token_writer(run: Run) -> dict[str, Any]:
    """The head's init container: the curation image's python, the run's claim, nothing else."""
    return {
        "name": TOKEN_INIT_CONTAINER,
        "image": run.spec.images.curation,
        "imagePullPolicy": run.spec.images.pull_policy,
        "command": ["python", "-c", _WRITE_TOKEN, token_path(run)],
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "128Mi"}},
        "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}],
        "securityContext": container_security(),
    }


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
    base["env"] = [*base["env"], *token_env(run)]
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


def _head_template(run: Run, head: dict[str, Any]) -> dict[str, Any]:
    template = _pod_template(run, [head])
    template["spec"]["initContainers"] = [_token_writer(run)]
    return template


#: The submitter mounts only what it reads: the summary on the run's volume, or on the cache claim (spec.cache).
_SUBMITTER_VOLUMES = ("workspace", "scratch", "stage-cache")


def _submitter(run: Run) -> dict[str, Any]:
    curated = output_dirs(run)[0] or f"{run.run_dir}/curated"
    summary = f"{curated}/{SUMMARY_FILE}"
    script = _SUBMIT.format(
        entrypoint=shlex.join(curation_entrypoint()),
        summary=shlex.quote(summary),
        termination=shlex.quote(TERMINATION_MESSAGE_PATH),
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
                "headGroupSpec": {
                    # No blocks on the head: it holds the GCS, the dashboard and the driver.
                    "rayStartParams": {"num-cpus": "0"},
                    "template": _head_template(run, head),
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
