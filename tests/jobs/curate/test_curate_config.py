"""`reasoning curate`'s flags lay over one stage config (the operator's `--config`, else the spec's defaults)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml

from reasoning_jobs.curate.cli import FLAG_OF, build_config
from reasoning_operator.api import CurationSpec, CurationStageConfig, DatasetSpec


def test_flags_alone_get_the_specs_defaults(tmp_path: Path) -> None:
    config = build_config(None, {("dataset", "source"): str(tmp_path), ("output_dir",): str(tmp_path / "out")})
    assert config.dataset.filename_filters == DatasetSpec().filename_filters == ["math_v1.1", "chat"]
    assert config.curation.workers == CurationSpec().workers
    assert config.curation == CurationSpec()
    assert config.dataset.used_in_training == "Nano"


def test_flags_override_the_operators_config(tmp_path: Path) -> None:
    written = CurationStageConfig(
        dataset=DatasetSpec(source="/data/set", filename_filters=["chat"]),
        curation=CurationSpec(workers=4, max_token_count=2048),
        output_dir="/run/curated",
    )
    path = tmp_path / "curation.yaml"
    path.write_text(yaml.safe_dump(written.to_wire()), encoding="utf-8")
    config = build_config(path, {("curation", "workers"): 2, ("dataset", "used_in_training"): None})
    assert config.curation.workers == 2  # the flag
    assert config.curation.max_token_count == 2048  # the file
    assert config.dataset.filename_filters == ["chat"] and config.dataset.source == "/data/set"
    assert config.dataset.used_in_training is None and config.keeps_used_in_training() is None


@pytest.mark.parametrize(
    ("path", "value", "flag"),
    [
        (("curation", "workers"), 0, "--n-workers"),
        (("curation", "token_counter"), "fast", "--token-counter"),
        (("block_size",), 10, "--json-blocksize"),
        (("curation", "language"), "English", "--lang"),
        (("dataset", "source"), "relative/path", "--input-dir"),
    ],
)
def test_a_bad_flag_is_refused_naming_the_flag(tmp_path: Path, path: tuple[str, ...], value: object, flag: str) -> None:
    flags = {("dataset", "source"): str(tmp_path), ("output_dir",): str(tmp_path), path: value}
    with pytest.raises(typer.BadParameter, match=f"^{flag}: "):
        build_config(None, flags)


def test_every_flag_names_a_field_of_the_stage_config() -> None:
    sections = {"dataset": DatasetSpec, "curation": CurationSpec}
    for path in FLAG_OF:
        model = sections[path[0]] if len(path) == 2 else CurationStageConfig
        assert path[-1] in model.model_fields, path


def test_the_key_ignores_what_does_not_change_the_data(tmp_path: Path) -> None:
    from reasoning_jobs.curate.pipeline import _claim_output

    data = tmp_path / "data"  # the key fingerprints a local dataset: outputs live beside it, not inside
    (data / "SFT" / "chat").mkdir(parents=True)
    (data / "SFT" / "chat" / "chat.jsonl").write_text("{}\n", encoding="utf-8")

    base = CurationStageConfig(
        dataset=DatasetSpec(source=str(data)), curation=CurationSpec(), output_dir=str(tmp_path / "a")
    )
    moved = base.model_copy(update={"output_dir": str(tmp_path / "b")})
    other = base.model_copy(update={"curation": CurationSpec(max_token_count=1024)})
    key = _claim_output(base).key
    assert _claim_output(moved).key == key
    assert _claim_output(other).key != key
