"""`reasoning export`: after evaluation, the trained model as a merged Hugging Face directory and/or the PEFT
adapter, each with a model card, on the run's volume and, where spec.export.destination says, elsewhere."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from reasoning_operator.api import ExportResult, ExportStageConfig, load_config


def run_export(config: ExportStageConfig) -> ExportResult:
    from reasoning_jobs.common.artifacts import read_key
    from reasoning_jobs.common.keys import stage_key
    from reasoning_jobs.common.results import report_result

    from .destinations import publish
    from .model import write_adapter, write_merged

    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = os.environ.get("REASONING_RUN") or out.resolve().parent.name
    merged = write_merged(config, out / "merged", name) if config.export.merged else None
    adapter = write_adapter(config, out / "adapter", name) if config.export.adapter else None
    files = [p for d in (merged, adapter) if d is not None for p in d.rglob("*") if p.is_file()]
    staged = out if config.export.destination is None else _bundle(out, merged, adapter)
    destination = publish(staged, config.export.destination)
    remote = destination.rstrip("/")
    result = ExportResult(
        destination=destination,
        merged_path=f"{remote}/merged" if merged is not None else None,
        adapter_path=f"{remote}/adapter" if adapter is not None else None,
        files=len(files),
        bytes=sum(p.stat().st_size for p in files),
        inputs_key=stage_key("export", config.export.to_wire(), read_key(config.trained_dir)),
    )
    report_result(result, out)
    return result


def _bundle(out: Path, merged: Path | None, adapter: Path | None) -> Path:
    """What leaves the volume: merged/ and adapter/ only (not summary.json and the like)."""
    bundle = out / "bundle"
    import shutil

    if bundle.exists():
        shutil.rmtree(bundle)
    bundle.mkdir()
    for directory in (merged, adapter):
        if directory is not None:
            shutil.copytree(directory, bundle / directory.name)
    return bundle


def main(
    config: Annotated[Path, typer.Option("--config", help="ExportStageConfig (YAML/JSON).", exists=True)],
) -> None:
    """Export the trained model; writes summary.json (and the termination message) with where it went."""
    from pydantic import ValidationError

    from .model import ExportError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        stage = load_config(ExportStageConfig, config)
        result = run_export(stage)
    except (ExportError, ValidationError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from error
    typer.echo(f"exported {result.files} files ({result.bytes / 1e6:.1f} MB) to {result.destination}")
