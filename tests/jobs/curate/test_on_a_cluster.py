"""Curation on a cluster as in one pod: a worker lost as the pipeline starts must not fail the job (no per-node
setup task for stages that set nothing up on a node: Curator pins one to every node and waits for all), and how
it runs is not part of its inputs key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nemo_curator.backends import utils as curator_utils
from nemo_curator.stages.base import ProcessingStage

from reasoning_jobs.curate import pipeline
from reasoning_jobs.curate.stages import BlockPartitionStage, StageChain
from reasoning_operator.api import CurationStageConfig, Stage
from reasoning_operator.api.stage_defs import definition


class _NodeSetup(StageChain):
    def setup_on_node(self, node_info: Any = None, worker_metadata: Any = None) -> None:
        pass


def test_only_stages_with_a_node_setup_get_setup_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[ProcessingStage[Any, Any]]] = []
    monkeypatch.setattr(curator_utils, "execute_setup_on_node", lambda stages, ignore_head_node: asked.append(stages))
    ours = [BlockPartitionStage(blocks=[]), StageChain(steps=())]
    pipeline._node_setup(ours, ignore_head_node=True)
    assert asked == []  # the job's own stages: no task pinned to any node
    custom = _NodeSetup(steps=())
    pipeline._node_setup([*ours, custom], ignore_head_node=True)
    assert asked == [[custom]]


def _config(out: Path, **curation: Any) -> CurationStageConfig:
    return CurationStageConfig(dataset={"source": str(out.parent / "data")}, curation=curation, output_dir=str(out))


def test_how_curation_runs_is_not_part_of_its_inputs_key(tmp_path: Path) -> None:
    """The job's stamp and the local runner's key: one key for one pod or a cluster, any worker count (the
    output is byte-identical across them); a rule setting still changes it."""
    base = pipeline._claim_output(_config(tmp_path / "a", workers=8)).key
    assert pipeline._claim_output(_config(tmp_path / "b", workers=2, cluster={"workers": 3})).key == base
    assert pipeline._claim_output(_config(tmp_path / "c", language_threshold=0.9)).key != base
    curation = definition(Stage.CURATION)
    one, other = (_config(tmp_path / "a", workers=w).to_wire() for w in (1, 16))
    assert curation.keyed(one) == curation.keyed(other) and "workers" not in curation.keyed(one)["curation"]
