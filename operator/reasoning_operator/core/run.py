"""The identity of one ReasoningRun, as the core sees it: enough to name, label and own its children."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from reasoning_operator.api import API_VERSION, KIND, QUEUE_NAME_LABEL, ReasoningRunSpec, ReasoningRunStatus, Stage

MANAGED_BY = "reasoning-operator"
RUN_LABEL = "reasoning-operator.dev/run"
STAGE_LABEL = "reasoning-operator.dev/stage"
WORKSPACE = "/workspace"
#: Parsed specs by their JSON text: validating a run's spec again on every reconcile was a fifth of the
#: reconcile's CPU, and one text always validates to the same (never mutated) model. Bounded, oldest out.
SPEC_CACHE_SIZE = 2048
_specs: OrderedDict[bytes, ReasoningRunSpec] = OrderedDict()
_specs_lock = threading.Lock()


def parsed_spec(raw: dict[str, Any]) -> ReasoningRunSpec:
    """The validated spec, from the cache when this very text was validated before."""
    try:
        key = orjson.dumps(raw, default=str)  # a sixth of the standard library's time
    except TypeError:  # an integer beyond 64 bits: no apiserver sends one, but the text stays exact
        key = json.dumps(raw, separators=(",", ":"), default=str).encode()
    with _specs_lock:
        spec = _specs.get(key)
        if spec is not None:
            _specs.move_to_end(key)
            return spec
    spec = ReasoningRunSpec.model_validate(raw)  # raises on invalid input: nothing cached
    with _specs_lock:
        _specs[key] = spec
        while len(_specs) > SPEC_CACHE_SIZE:
            _specs.popitem(last=False)
    return spec


@dataclass(frozen=True)
class RunRef:
    name: str
    namespace: str
    uid: str
    generation: int = 1
    #: The run's own kueue.x-k8s.io/queue-name label, if any (spec.queueName wins over it).
    queue_label: str | None = None


@dataclass(frozen=True)
class Run:
    """A parsed ReasoningRun: metadata, validated spec and the status last written."""

    ref: RunRef
    spec: ReasoningRunSpec
    status: ReasoningRunStatus

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Run:
        meta = obj["metadata"]
        return cls(
            ref=RunRef(
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
                generation=int(meta.get("generation") or 1),
                queue_label=(meta.get("labels") or {}).get(QUEUE_NAME_LABEL) or None,
            ),
            spec=parsed_spec(obj.get("spec") or {}),
            status=ReasoningRunStatus.model_validate(_known_status(obj.get("status") or {})),
        )

    @property
    def queue_name(self) -> str | None:
        """The Kueue LocalQueue of the stage Jobs: spec.queueName, else the run's queue-name label."""
        return self.spec.queue_name or self.ref.queue_label

    # -- names (deterministic: a restarted operator finds, never duplicates, its children) -----------
    def child_name(self, stage: Stage) -> str:
        return f"{self.ref.name}-{stage.value}"

    @property
    def config_map_name(self) -> str:
        return f"{self.ref.name}-config"

    @property
    def claim_name(self) -> str:
        return self.spec.storage.existing_claim or f"{self.ref.name}-data"

    @property
    def run_dir(self) -> str:
        """Per-run directory on the volume; the uid keeps a recreated run from resuming a stranger's checkpoints."""
        return f"{WORKSPACE}/runs/{self.ref.name}-{self.ref.uid[:8]}"

    def labels(self, stage: Stage | None = None, component: str | None = None) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": "reasoning-run",
            "app.kubernetes.io/instance": self.ref.name,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/part-of": "reasoning-operator",
            RUN_LABEL: self.ref.name,
        }
        if stage is not None:
            labels["app.kubernetes.io/component"] = component or stage.value
            labels[STAGE_LABEL] = stage.value
        elif component is not None:
            labels["app.kubernetes.io/component"] = component
        return labels

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.ref.name,
            "uid": self.ref.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(
        self, name: str, stage: Stage | None = None, component: str | None = None, owned: bool = True
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "namespace": self.ref.namespace,
            "labels": self.labels(stage, component),
        }
        if owned:
            meta["ownerReferences"] = [self.owner_reference()]
        return meta


def _known_status(status: dict[str, Any]) -> dict[str, Any]:
    """Drop fields another writer (e.g. an older operator or kopf) left in status; they are not ours."""
    fields = {f.alias or n for n, f in ReasoningRunStatus.model_fields.items()}
    return {k: v for k, v in status.items() if k in fields}
