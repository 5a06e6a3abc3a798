"""The `reasoning` console script. Subcommands import their implementation lazily so that
`reasoning crds` never loads torch and the operator image never needs the job extras."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

import typer

from reasoning_operator.api.contract import PROGRAM
from reasoning_operator.api.stage_defs import STAGES

app = typer.Typer(
    name=PROGRAM,
    help="Turn a Kubernetes GPU cluster into a reasoning-model factory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Turn a Kubernetes GPU cluster into a reasoning-model factory."""


#: subcommand -> (module, function, help). Each function is a typer-annotated command; the stage jobs' come from
#: their stage definitions (the wire contract's names, which the operator's pods run).
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "operator": ("reasoning_operator.main", "main", "Run the operator (kopf) against the current kubeconfig."),
    "crds": ("reasoning_operator.api.crd", "main", "Generate the CRD YAML from the API models."),
    **{d.subcommand: (d.module, "main", d.help) for d in STAGES},
    "run": ("reasoning_jobs.local.cli", "main", "Run a whole ReasoningRun locally, no cluster, no GPU."),
    "assets": ("reasoning_jobs.common.assets_cli", "main", "Make a real model's directory (smollm2) once, cached."),
}


def _load(module: str, attr: str) -> Callable[..., Any]:
    command: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return command


def _register(argv: list[str]) -> None:
    """Register only the subcommand being called (lazy), or all of them for --help."""
    wanted = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    for name, (module, attr, help_text) in SUBCOMMANDS.items():
        if wanted is not None and name != wanted:
            continue
        if wanted is None:
            app.command(name=name, help=help_text)(_placeholder(name))
        else:
            app.command(name=name, help=help_text)(_load(module, attr))


def _placeholder(name: str) -> Callable[[], None]:
    def command() -> None:
        raise typer.Exit(code=0)

    command.__name__ = name
    return command


def _normalized(args: list[str]) -> list[str]:
    """A subcommand module may rewrite its own arguments first (`normalize_argv`): curation takes the
    tutorial's argparse-style list flags, which click cannot parse."""
    if not args or args[0] not in SUBCOMMANDS:
        return args
    module = importlib.import_module(SUBCOMMANDS[args[0]][0])
    normalize: Callable[[list[str]], list[str]] | None = getattr(module, "normalize_argv", None)
    return args if normalize is None else [args[0], *normalize(args[1:])]


def main(argv: list[str] | None = None) -> None:
    args = _normalized(list(sys.argv[1:] if argv is None else argv))
    _register(args)
    app(args=args, prog_name=PROGRAM)


if __name__ == "__main__":
    main()
