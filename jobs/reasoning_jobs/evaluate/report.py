"""results.json, the Markdown and HTML reports with a PNG chart, and the compact stage result."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasoning_operator.api import Accuracy, EvaluationResult, EvaluationStageConfig

from .runner import EvaluationRun, records_as_dicts
from .statistics import CellScore
from .tracking import TrackingLinks

#: Room under the termination message's limit (the contract's TERMINATION_MESSAGE_LIMIT, 4096 bytes) for what
#: the CLI adds after: the inputs key and where stale artifacts went.
COMPACT_LIMIT = 3800

SHUFFLE_NOTE = "GPQA choices shuffled per question with random.Random(f'{seed}:{question_id}'); MMLU order kept"


def _sorted(scores: Sequence[CellScore]) -> list[CellScore]:
    return sorted(scores, key=lambda s: (s.benchmark, s.model, s.mode))


def _served_by(config: EvaluationStageConfig) -> str:
    return f" ({config.served_by} backend)" if config.served_by else ""


def write_results_json(run: EvaluationRun, config: EvaluationStageConfig, path: Path) -> Path:
    payload = {
        "server_url": config.server_url,
        "served_by": config.served_by,
        "models": list(config.models),
        "evaluation": config.evaluation.to_wire(),
        "seed": config.evaluation.seed,
        "shuffle": SHUFFLE_NOTE,
        "questions": run.questions,
        "scores": [vars(score) for score in _sorted(run.scores)],
        "records": records_as_dicts(run.records),
    }
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def write_chart(scores: Sequence[CellScore], path: Path) -> Path:
    """One panel per benchmark: a bar per model × mode, with its 95% Wilson interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = sorted({s.benchmark for s in scores})
    models = sorted({s.model for s in scores})
    modes = sorted({s.mode for s in scores})
    cell = {(s.benchmark, s.model, s.mode): s for s in scores}
    figure, axes = plt.subplots(1, len(benchmarks), figsize=(4.2 * len(benchmarks), 3.8), squeeze=False)
    width = 0.8 / max(len(modes), 1)
    colours = {"on": "#76b900", "off": "#5c6bc0"}
    for axis, benchmark in zip(axes[0], benchmarks, strict=True):
        for m, mode in enumerate(modes):
            xs, heights, lower, upper = [], [], [], []
            for i, model in enumerate(models):
                score = cell.get((benchmark, model, mode))
                if score is None:
                    continue
                xs.append(i + (m - (len(modes) - 1) / 2) * width)
                heights.append(score.accuracy)
                lower.append(score.accuracy - score.ci_low)
                upper.append(score.ci_high - score.accuracy)
            axis.bar(xs, heights, width, yerr=[lower, upper], capsize=3, label=f"reasoning {mode}",
                     color=colours.get(mode))  # fmt: skip
        axis.set_title(benchmark)
        axis.set_xticks(range(len(models)), models)
        axis.set_ylim(0, 1)
        axis.set_ylabel("accuracy (95% Wilson CI)")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


COLUMNS = ("benchmark", "model", "mode", "n", "accuracy", "95% CI", "unanswered", "errors", "thinking tokens",
           "toggle compliance")  # fmt: skip


def _row(score: CellScore) -> list[str]:
    return [
        score.benchmark,
        score.model,
        score.mode,
        str(score.n),
        f"{score.accuracy:.3f}",
        f"[{score.ci_low:.3f}, {score.ci_high:.3f}]",
        f"{score.unanswered} ({score.unanswered_rate:.1%})",
        str(score.errors),
        f"{score.mean_thinking_tokens:.1f}",
        f"{score.compliance:.1%}",
    ]


def write_markdown(
    run: EvaluationRun, config: EvaluationStageConfig, chart: Path, path: Path, links: TrackingLinks | None = None
) -> Path:
    lines = [
        "# Evaluation report",
        "",
        f"Server: `{config.server_url}`{_served_by(config)} · models: {', '.join(config.models)} · "
        f"modes: {', '.join(config.evaluation.modes)} · seed {config.evaluation.seed}",
        "",
        f"![accuracy by model and reasoning mode]({chart.name})",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_row(score)) + " |" for score in _sorted(run.scores)]
    lines += [
        "",
        "Accuracy counts unanswered questions as wrong. Thinking tokens: the server's output tokens × the think "
        "block's share of the response. Compliance: think tags present with reasoning on, absent with it off.",
        f"{SHUFFLE_NOTE}.",
        "",
    ]
    tracked = links.lines() if links is not None else []
    if tracked:
        lines += ["## Tracking", ""]
        lines += [f"- {label}: {_md_target(target)}" for label, target in tracked]
        lines += [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _md_target(target: str) -> str:
    return f"[{target}]({target})" if target.startswith(("http://", "https://")) else f"`{target}`"


def _html_target(target: str) -> str:
    escaped = html.escape(target)
    return (
        f'<a href="{escaped}">{escaped}</a>'
        if target.startswith(("http://", "https://"))
        else f"<code>{escaped}</code>"
    )


def write_html(
    run: EvaluationRun, config: EvaluationStageConfig, chart: Path, path: Path, links: TrackingLinks | None = None
) -> Path:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in _row(score)) + "</tr>" for score in _sorted(run.scores)
    )
    tracked = links.lines() if links is not None else []
    tracking = (
        "<h2>Tracking</h2><ul>"
        + "".join(f"<li>{html.escape(label)}: {_html_target(target)}</li>" for label, target in tracked)
        + "</ul>"
        if tracked
        else ""
    )
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f3f3f3}}</style></head>
<body><h1>Evaluation report</h1>
<p>Server <code>{html.escape(config.server_url)}</code>{html.escape(_served_by(config))};
models {html.escape(", ".join(config.models))};
modes {html.escape(", ".join(config.evaluation.modes))}; seed {config.evaluation.seed}.</p>
<img src="{html.escape(chart.name)}" alt="accuracy by model and reasoning mode">
<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>
<p>Accuracy counts unanswered questions as wrong. {html.escape(SHUFFLE_NOTE)}.</p>
{tracking}
</body></html>
"""
    path.write_text(document, encoding="utf-8")
    return path


def evaluation_result(
    scores: Sequence[CellScore], report_path: str | None, mlflow_run_url: str | None = None
) -> EvaluationResult:
    """The compact result for the operator; optional fields are dropped if it would not fit the limit."""

    def build(full: bool) -> EvaluationResult:
        accuracies = []
        for s in _sorted(scores):
            extra: dict[str, Any] = (
                {"unanswered_rate": round(s.unanswered_rate, 4), "compliance": round(s.compliance, 4)} if full else {}
            )
            accuracies.append(
                Accuracy(
                    benchmark=s.benchmark,
                    mode=s.mode,
                    model=s.model,
                    accuracy=round(s.accuracy, 4),
                    ci_low=round(s.ci_low, 4),
                    ci_high=round(s.ci_high, 4),
                    n=s.n,
                    **extra,
                )
            )
        return EvaluationResult(accuracies=accuracies, report_path=report_path, mlflow_run_url=mlflow_run_url)

    result = build(full=True)
    if len(json.dumps(result.to_wire(), separators=(",", ":")).encode()) > COMPACT_LIMIT:
        result = build(full=False)
    return result
