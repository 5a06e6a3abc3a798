"""`reasoning evaluate --config FILE`: GPQA/MMLU against the Triton server, base vs trained, reasoning on/off."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from reasoning_operator.api import EvaluationStageConfig, load_config
from reasoning_operator.api.contract import BASE_MODEL_NAME


def main(
    config: Annotated[Path, typer.Option("--config", help="EvaluationStageConfig (YAML/JSON).", exists=True)],
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to become ready.")] = 300.0,
) -> None:
    """Evaluate the served models and write results.json, report.md/html, accuracy.png and summary.json."""
    from reasoning_jobs.common.artifacts import claim_output, evaluation_key
    from reasoning_jobs.common.results import report_result

    from .benchmarks import BenchmarkError
    from .report import evaluation_result, write_chart, write_html, write_markdown, write_results_json
    from .retrying import ServerUnreachableError
    from .runner import evaluate
    from .tracking import track

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stage = load_config(EvaluationStageConfig, config)
    if not stage.evaluation.compare_base:
        kept = [model for model in stage.models if model != BASE_MODEL_NAME]
        stage = stage.model_copy(update={"models": kept or list(stage.models)})
    try:
        run = evaluate(stage, progress=progress, ready_timeout=ready_timeout)
    except (BenchmarkError, ServerUnreachableError, ValueError) as error:
        typer.echo(f"evaluate: {error}", err=True)
        raise typer.Exit(code=2) from error
    out = Path(stage.output_dir)
    claim = claim_output(out, "evaluation", evaluation_key(stage))  # another run's results are moved aside
    write_results_json(run, stage, out / "results.json")
    chart = write_chart(run.scores, out / "accuracy.png")
    links = track(stage, run.scores)
    write_markdown(run, stage, chart, out / "report.md", links)
    report = write_html(run, stage, chart, out / "report.html", links)
    result = evaluation_result(run.scores, str(report), links.mlflow_run_url)
    report_result(result.model_copy(update={"inputs_key": claim.key, "stale_artifacts": claim.moved_to}), out)
    for score in sorted(run.scores, key=lambda s: (s.benchmark, s.model, s.mode)):
        typer.echo(
            f"{score.benchmark:>13} {score.model:>8} reasoning {score.mode:<3} accuracy {score.accuracy:.3f} "
            f"[{score.ci_low:.3f}, {score.ci_high:.3f}] n={score.n} unanswered={score.unanswered} "
            f"compliance={score.compliance:.1%}"
        )
    typer.echo(f"report: {report}")
