"""Every artifact directory a stage writes carries the key of the inputs that made it (`inputs.json`).

A stage resumes or reuses what is in its output directory only when the key there is its own. Otherwise the
directory holds another experiment's artifacts (a run deleted and created again under the same name with a
changed config, a shared claim, `reasoning run --force`): they are moved aside, never deleted (they are a
user's data), the stage starts fresh, and its log and result (so the run's status) say where they went."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reasoning_operator.api import EvaluationStageConfig, TrainingStageConfig
from reasoning_operator.api.contract import SUMMARY_FILE

from .keys import fingerprint, stage_key

INPUTS_FILE = "inputs.json"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """The output directory, now this key's; `moved_to` is where artifacts of other inputs went (this run
    or an earlier attempt of it), None when there were none."""

    key: str
    moved_to: str | None


def read_key(directory: str | Path) -> str | None:
    """The inputs key stamped on a directory's artifacts, None when it carries none."""
    try:
        record = json.loads((Path(directory) / INPUTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = record.get("key") if isinstance(record, dict) else None
    return str(key) if key else None


def move_aside(directory: Path, why: str) -> Path | None:
    """Rename a non-empty directory to `<name>.stale-<its key>-<UTC time>` beside it; None when there was
    nothing to move. A rename: same volume, nothing copied, nothing deleted."""
    if not directory.is_dir() or not any(directory.iterdir()):
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    base = f"{directory.name}.stale-{read_key(directory) or 'unkeyed'}-{stamp}"
    target = directory.with_name(base)
    n = 1
    while target.exists():
        n += 1
        target = directory.with_name(f"{base}-{n}")
    directory.rename(target)
    log.warning("moved %s aside to %s (%s); starting fresh", directory, target, why)
    return target


#: What each stage writes: a directory holding any of these (or another key's inputs.json) is a stage's output.
ARTIFACTS = {
    "curation": ("training.jsonl", "shards", SUMMARY_FILE),
    "training": ("checkpoints", "adapter", "model", "merged", "metrics.jsonl", SUMMARY_FILE),
    "evaluation": ("results.json", "report.md", SUMMARY_FILE),
}


def _inside(path: str | Path, directory: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(directory.resolve())
    except (OSError, ValueError):
        return False


def claim_output(
    output_dir: str | Path, stage: str, key: str, upstream: str | None = None, inputs: tuple[str, ...] = ()
) -> Claim:
    """Make `output_dir` hold only artifacts of `key`: kept as is (resume, reuse) when it already carries
    that key, else moved aside and started empty. A directory with none of the stage's artifacts (say, a
    user's folder given as --output-dir) is only stamped; one holding the stage's own `inputs` is never moved."""
    directory = Path(output_dir)
    marker = directory / INPUTS_FILE
    previous: dict[str, Any] = {}
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            previous = {}
    if previous.get("key") == key:
        moved = previous.get("movedAside")
        log.info("%s: %s carries this run's inputs key %s: resuming/reusing it", stage, directory, key)
        return Claim(key, str(moved) if moved else None)
    found = previous.get("key") or "none"
    stale = bool(previous) or any((directory / name).exists() for name in ARTIFACTS.get(stage, ()))
    target = None
    if stale and any(_inside(path, directory) for path in inputs):
        log.warning(
            "%s: %s holds artifacts of inputs key %s but also this stage's input: not moved", stage, directory, found
        )
    elif stale:
        target = move_aside(directory, f"its artifacts carry inputs key {found}, this {stage} stage's key is {key}")
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "stage": stage,
        "key": key,
        "upstream": upstream,
        "createdAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "movedAside": str(target) if target else None,
    }
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(marker)
    return Claim(key, str(target) if target else None)


def _without(wire: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in wire.items() if k not in names}


def curation_key(settings: dict[str, Any], source: str) -> str:
    """The curation settings as the job resolved them (config and flags; not where it writes, not
    credentials) and a fingerprint of a local dataset."""
    return stage_key("curation", {**settings, "data": fingerprint(source)}, None)


def training_upstream(config: TrainingStageConfig) -> str | None:
    """The curated data's key (from its directory), else a fingerprint of a data file given directly."""
    return read_key(Path(config.data_path).parent) or fingerprint(config.data_path)


def training_key(config: TrainingStageConfig, upstream: str | None) -> str:
    """Config (not its paths), the base model (a fingerprint when local) and the upstream data's key."""
    wire = _without(config.to_wire(), "outputDir", "dataPath", "tracking")
    return stage_key("training", {**wire, "base": fingerprint(config.model.name)}, upstream)


def evaluation_key(config: EvaluationStageConfig) -> str:
    """Settings and models (not the server's address) and the key of the trained model the server serves."""
    wire = _without(config.to_wire(), "outputDir", "serverUrl", "trainedDir", "tracking")
    upstream = read_key(config.trained_dir) if config.trained_dir else None
    return stage_key("evaluation", wire, upstream)
