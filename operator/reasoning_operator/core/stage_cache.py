"""The operator's stage cache (spec.cache): each cacheable stage's key, where its output lives, and whether a
finished run already made it.

Keys are computed from the spec alone (pure, before the stage runs), over what determines the output: for
curation the dataset, the curation settings and the tokenizer; for training the curation key and the
training config. Fields that only say how or where a stage runs (resources, images, GPU products, retries,
tracking, secrets of the model hub) are left out. The operator version is in both: new curation or training
code may make different output. A dataset or model given as a path on the run's volume is keyed with that
volume's claim name, since another run's volume holds other files under the same path (an edit in place is
not seen: change the path).

Outputs are content-addressed on the user's cache claim (`/cache/<stage>/<key>/`). The operator cannot read
that claim; what it knows of a finished stage is another run's status (same namespace, same cache claim,
that stage Succeeded with the same key). Deleting that run deletes nothing on the cache claim (the operator
never creates, owns or deletes it): neither refcount nor copy is needed, the data outlives every run."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reasoning_operator import __version__
from reasoning_operator.api import (
    CURATION_EXECUTION_FIELDS,
    CacheKeys,
    CacheStatus,
    CurationResult,
    ReasoningRunSpec,
    ReasoningRunStatus,
    Stage,
    StagePhase,
    TrainingResult,
)

from .run import Run

CACHE_MOUNT = "/cache"
CACHED_STAGES = (Stage.CURATION, Stage.TRAINING)


def _digest(stage: Stage, payload: dict[str, Any]) -> str:
    text = json.dumps({"stage": stage.value, "version": __version__, **payload}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _volume(path: str, claim: str) -> str | None:
    """The claim a path-valued input lives on; None for hub ids and object-store URIs."""
    return claim if path.startswith("/") else None


def curation_key(spec: ReasoningRunSpec, claim: str) -> str:
    dataset = spec.dataset.to_wire()
    curation = {k: v for k, v in spec.curation.to_wire().items() if k not in CURATION_EXECUTION_FIELDS}
    # The credentials Secret stays in: its AWS_ENDPOINT_URL picks which store an s3:// URI means.
    return _digest(
        Stage.CURATION,
        {
            "dataset": dataset,
            "curation": curation,
            "tokenizer": spec.tokenizer(),
            "volume": _volume(spec.dataset.source, claim) or _volume(spec.tokenizer(), claim),
        },
    )


def training_key(spec: ReasoningRunSpec, claim: str) -> str:
    training = spec.training.to_wire()
    for name in ("resources", "acceptedGpuProducts", "backoffLimit"):
        training.pop(name, None)
    model = spec.model.to_wire()
    model.pop("hubTokenSecret", None)
    return _digest(
        Stage.TRAINING,
        {
            "curation": curation_key(spec, claim),
            "model": model,
            "training": training,
            "volume": _volume(spec.model.name, claim),
        },
    )


def keys(run: Run) -> CacheKeys:
    return CacheKeys(curation=curation_key(run.spec, run.claim_name), training=training_key(run.spec, run.claim_name))


def enabled(run: Run) -> bool:
    return run.spec.cache.enabled and run.spec.cache.claim_name is not None


def cache_status(run: Run) -> CacheStatus | None:
    return CacheStatus(claim_name=run.spec.cache.claim_name, keys=keys(run)) if enabled(run) else None


def stage_dir(stage: Stage, key: str) -> str:
    return f"{CACHE_MOUNT}/{stage.value}/{key}"


def output_dirs(run: Run) -> tuple[str | None, str | None]:
    """(curated, trained) directories on the cache claim, or (None, None) for the run directory's."""
    if not enabled(run):
        return None, None
    k = keys(run)
    return stage_dir(Stage.CURATION, k.curation or ""), stage_dir(Stage.TRAINING, k.training or "")


#: The parts of another run's status a cache source is read from.
_READ = ("cache", "stages", "curation", "training")


@dataclass(frozen=True)
class CacheSource:
    """One other run's finished, cached stage as its status tells it."""

    run: str
    claim: str
    stage: Stage
    key: str
    #: None while its Job still runs (the output is being made), the result once the stage Succeeded.
    result: CurationResult | TrainingResult | None


def sources(runs: list[dict[str, Any]]) -> tuple[CacheSource, ...]:
    """Every finished cached stage the listed runs' statuses show (their specs are not read: status says
    what the run did; a status another writer mangled is skipped)."""
    found: list[CacheSource] = []
    for obj in runs:
        name = (obj.get("metadata") or {}).get("name")
        raw = obj.get("status") or {}
        suspended = bool((obj.get("spec") or {}).get("suspend"))
        if not name or not raw.get("cache"):
            continue
        try:
            status = ReasoningRunStatus.model_validate(
                {k: raw[k] for k in ("cache", "stages", "curation", "training") if k in raw}
            )
        except ValidationError:
            continue
        cache = status.cache
        if cache is None or cache.claim_name is None:
            continue
        for stage in CACHED_STAGES:
            key = getattr(cache.keys, stage.value)
            result = getattr(status, stage.value)
            stage_status = status.stages.get(stage)
            done = result is not None and stage_status.phase == StagePhase.SUCCEEDED
            # A Job running (not held by spec.suspend) for the same key: its output is on the way.
            busy = stage_status.phase == StagePhase.RUNNING and stage_status.child is not None and not suspended
            if key and (done or busy):
                found.append(CacheSource(str(name), cache.claim_name, stage, key, result if done else None))
    return tuple(found)


def reusable(run: Run, stage: Stage, found: tuple[CacheSource, ...]) -> CacheSource | None:
    """Another run's output this run's stage may take instead of running: same stage key on the same cache
    claim, never the run itself. A finished one first (its result is copied), else one whose Job is making
    that output now (the stage waits for it rather than writing into the same directory); the first by name,
    so every reconcile picks the same one."""
    if not enabled(run) or stage not in CACHED_STAGES:
        return None
    key = getattr(keys(run), stage.value)
    matches = [
        s
        for s in found
        if s.stage == stage and s.key == key and s.claim == run.spec.cache.claim_name and s.run != run.ref.name
    ]
    return min(matches, key=lambda s: (s.result is None, s.run)) if matches else None
