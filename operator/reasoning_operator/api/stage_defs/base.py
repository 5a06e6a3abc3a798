"""What one stage is, stated once: the shape every stage definition fills in (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..base import ApiModel
from ..spec import CurationCluster, ReasoningRunSpec, Resources
from ..stage_members import ConditionType, Phase, Stage


class StageKind(StrEnum):
    #: One-shot: a Job (or a RayJob) that runs to completion and reports a result in its termination message.
    JOB = "Job"
    #: Long-running: a Deployment and a Service, done once ready and kept while later stages need it.
    SERVICE = "Service"


def _always(spec: ReasoningRunSpec) -> bool:
    return True


def _no_gpus(spec: ReasoningRunSpec) -> int:
    return 0


def _two_retries(spec: ReasoningRunSpec) -> int:
    return 2


def _no_secret(spec: ReasoningRunSpec) -> str | None:
    return None


def _no_cluster(spec: ReasoningRunSpec) -> CurationCluster | None:
    return None


def _no_sources(spec: ReasoningRunSpec) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class StageDef:
    """One stage: what the run's status, the operator's children, the CLI and the local runner know of it.
    The callables read the run's spec (pure); the defaults are the common case."""

    #: The stage's name: its Stage member, its status fields (status.stages.<name>, status.<name>), its config's
    #: key in the run's ConfigMap and its child's name suffix.
    name: str
    kind: StageKind
    #: The run's phase while this stage is the current one (a Phase member).
    phase_name: str
    #: The condition this stage's outcome is written to (a ConditionType member).
    condition_name: str
    #: `reasoning <subcommand> --config FILE` runs the stage's job (the wire contract's JOB_SUBCOMMANDS).
    subcommand: str
    #: The module whose `main` is that subcommand, and its one-line help.
    module: str
    help: str
    image: Callable[[ReasoningRunSpec], str]
    resources: Callable[[ReasoningRunSpec], Resources]
    #: JOB: the model of the result its pod reports (the status field named like the stage holds it).
    result: type[ApiModel] | None = None
    #: GPUs per pod; any pins the pod to spec.training.acceptedGpuProducts (node affinity, GPU toleration).
    gpus: Callable[[ReasoningRunSpec], int] = _no_gpus
    #: Whether the run has this stage at all (export: only where spec.export is set).
    enabled: Callable[[ReasoningRunSpec], bool] = _always
    #: JOB: pod retries within the Job.
    backoff_limit: Callable[[ReasoningRunSpec], int] = _two_retries
    #: A Secret whose keys become the container's environment (object-store credentials, say).
    env_from_secret: Callable[[ReasoningRunSpec], str | None] = _no_secret
    #: Whether the spec's model hub token (HF_TOKEN) stays in the environment.
    hub_token: Callable[[ReasoningRunSpec], bool] = _always
    #: A memory-backed /dev/shm (Ray's object store, torch's data loaders).
    shm: bool = False
    #: Whether the pod gets spec.tracking's MLflow credentials (the stages that log metrics).
    tracked: bool = False
    #: The pod's terminationGracePeriodSeconds, where the default 30 s is too short.
    grace_seconds: int | None = None
    #: JOB: whether it talks to the SERVICE stage (evaluation: the served models). The service is kept up until
    #: every such stage succeeded, and such a stage's suspended Job is resumed only once the service is ready.
    uses_service: bool = False
    #: JOB: a KubeRay cluster to run on instead of a single pod (a RayJob), where the spec asks for one.
    ray_cluster: Callable[[ReasoningRunSpec], CurationCluster | None] = _no_cluster
    #: What the stage reads besides its config, by name: paths or model ids whose content (a fingerprint) is part
    #: of its inputs key, so a local run reuses its output only while they are unchanged.
    key_sources: Callable[[ReasoningRunSpec], dict[str, str]] = _no_sources
    #: Config fields that say where this run's processes listen (ports, the server's URL) or how the stage runs
    #: (its workers), not what it computes: left out of its inputs key. ``section.field`` names a nested one.
    volatile: frozenset[str] = frozenset()
    #: Where `enabled` can say no: when the stage is there (its status record is then optional, with this note).
    optional_note: str | None = None

    # The typed members generated from the names above (stage_members.py, `reasoning crds`).
    @property
    def stage(self) -> Stage:
        return Stage(self.name)

    def keyed(self, wire: dict[str, Any]) -> dict[str, Any]:
        """The config's wire form less its ``volatile`` fields: what its inputs key hashes."""
        kept = {k: v for k, v in wire.items() if k not in self.volatile}
        for path in (v for v in self.volatile if "." in v):
            section, field = path.split(".", 1)
            if isinstance(kept.get(section), dict):
                kept[section] = {k: v for k, v in kept[section].items() if k != field}
        return kept

    @property
    def phase(self) -> Phase:
        return Phase(self.phase_name)

    @property
    def condition(self) -> ConditionType:
        return ConditionType(self.condition_name)
