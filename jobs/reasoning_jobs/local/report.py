"""The local run's report: what `kubectl describe rr` would tell, plus the training curve and the
evaluation table, in one Markdown file beside the run."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from reasoning_operator.api import ReasoningRunStatus

CAVEAT = (
    "The quickstart trains a tiny model from scratch on a few thousand synthetic samples on a CPU: it is a "
    "plumbing demo of the whole pipeline, not a model-quality claim. Accuracy on the tiny multiple-choice set "
    "may sit near chance (25%); the reasoning-toggle compliance is the behaviour it can learn."
)


def training_curve(train_dir: Path, target: Path) -> Path | None:
    """The training job's own loss curve (training_curve.png), copied beside the report."""
    source = train_dir / "training_curve.png"
    if not source.is_file():
        return None
    shutil.copyfile(source, target)
    return target


def write_report(status: ReasoningRunStatus, name: str, root: Path, run_dir: Path) -> Path:
    lines = [f"# ReasoningRun `{name}` (local)", "", f"**Phase:** {status.phase.value}", ""]
    if status.failure_reason:
        lines += [f"**Failure:** {status.failure_reason.splitlines()[0]}", ""]
    lines += ["| stage | phase | duration | message |", "|---|---|---|---|"]
    for stage in status.stages.present():
        s = status.stages.get(stage)
        duration = f"{s.duration_seconds:.0f}s" if s.duration_seconds is not None else ""
        lines.append(f"| {stage.value} | {s.phase.value} | {duration} | {s.message or ''} |")
    lines += ["", "## Conditions", "", "| type | status | reason |", "|---|---|---|"]
    lines += [f"| {c.type} | {c.status} | {c.reason} |" for c in status.conditions]
    if status.curation is not None:
        c = status.curation
        lines += [
            "",
            "## Curation",
            "",
            f"- samples read: {c.samples_read}",
            f"- written: {c.samples_written} (reasoning on {c.reasoning_on}, off {c.reasoning_off})",
            f"- malformed lines: {c.malformed_lines}",
        ]
        lines += [f"- dropped by `{rule}`: {n}" for rule, n in sorted(c.dropped.items())]
    if status.training is not None:
        t = status.training
        lines += [
            "",
            "## Training",
            "",
            f"- steps: {t.steps}, final loss: {t.final_loss}",
            f"- tokens seen: {t.tokens_seen}, {t.tokens_per_second:.0f} tokens/s, wall {t.wall_seconds:.0f}s",
        ]
        curve = training_curve(run_dir / "train", root / "training-curve.png")
        if curve is not None:
            lines += ["", f"![training curve]({curve.name})"]
    if status.evaluation is not None:
        lines += [
            "",
            "## Evaluation",
            "",
            CAVEAT,
            "",
            "| benchmark | mode | model | accuracy | 95% CI | n | unanswered | toggle compliance |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for a in status.evaluation.accuracies:
            unanswered = f"{a.unanswered_rate:.1%}" if a.unanswered_rate is not None else ""
            compliance = f"{a.compliance:.1%}" if a.compliance is not None else ""
            lines.append(
                f"| {a.benchmark} | {a.mode} | {a.model} | {a.accuracy:.1%} | {a.ci_low:.1%}–{a.ci_high:.1%} "
                f"| {a.n} | {unanswered} | {compliance} |"
            )
        if status.evaluation.report_path:
            lines += ["", f"Full evaluation report: `{status.evaluation.report_path}`"]
    path = root / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def print_status(status: ReasoningRunStatus, name: str, console: Console) -> None:
    table = Table(title=f"ReasoningRun {name}: {status.phase.value}", title_justify="left")
    for column in ("stage", "phase", "duration", "message"):
        table.add_column(column)
    for stage in status.stages.present():
        s = status.stages.get(stage)
        duration = f"{s.duration_seconds:.0f}s" if s.duration_seconds is not None else ""
        table.add_row(stage.value, s.phase.value, duration, (s.message or "")[:80])
    console.print(table)
    if status.evaluation is not None and status.evaluation.accuracies:
        results = Table(title="Evaluation", title_justify="left")
        for column in ("benchmark", "mode", "model", "accuracy", "95% CI", "toggle compliance"):
            results.add_column(column)
        for a in status.evaluation.accuracies:
            compliance = f"{a.compliance:.1%}" if a.compliance is not None else ""
            results.add_row(
                a.benchmark, a.mode, a.model, f"{a.accuracy:.1%}", f"{a.ci_low:.1%}–{a.ci_high:.1%}", compliance
            )
        console.print(results)
