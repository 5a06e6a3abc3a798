"""`reasoning run MANIFEST`: the whole ReasoningRun on this machine (no cluster, no GPU needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    manifest: Annotated[Path, typer.Argument(help="A ReasoningRun manifest, e.g. examples/quickstart.yaml.")],
    run_dir: Annotated[Path | None, typer.Option(help="Where everything goes (default: runs/<name>).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-run every stage even if its inputs are unchanged.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only the status lines, not each stage's output.")] = False,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec field, e.g. --set training.maxSteps=4 (repeatable)."),
    ] = None,
) -> None:
    """Run curation, training, serving and evaluation locally, each stage as its own process."""
    from rich.console import Console

    from reasoning_operator.api import Phase

    from .manifest import ManifestError, load_manifest
    from .report import print_status, write_report
    from .runner import LocalRun

    console = Console(highlight=False)
    try:
        parsed = load_manifest(manifest, overrides)
    except ManifestError as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(code=2) from err
    local = LocalRun(parsed, run_dir or Path("runs") / parsed.name, force=force, echo=not quiet)
    status = local.run()
    report = write_report(status, parsed.name, local.root, local.run_dir)
    print_status(status, parsed.name, console)
    console.print(f"status: {local.root / 'status.yaml'}\nreport: {report}")
    if status.phase != Phase.SUCCEEDED:
        raise typer.Exit(code=1)
