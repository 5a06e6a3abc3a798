"""report.md and the PNGs from the raw results in results/ (curation, sweep, all-training; all or eval once run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAMES = {
    "gpqa_diamond": "held-out (MC)",
    "gpqa_main": "harder split (MC)",
    "freeform": "held-out (free-form)",
    "freeform_hard": "harder split (free-form)",
}
MODELS = ["base", "shuffle-lr1e-3", "shuffle-lr2e-4", "trained-bf16", "curric-lr2e-4", "trained-fp8", "anchor"]
LABEL = {
    "base": "base",
    "shuffle-lr1e-3": "pipeline, shuffled, lr 1e-3 (the example)",
    "shuffle-lr2e-4": "pipeline, shuffled, lr 2e-4",
    "trained-bf16": "pipeline, curriculum, lr 1e-3",
    "curric-lr2e-4": "pipeline, curriculum, lr 2e-4",
    "trained-fp8": "pipeline, curriculum, lr 1e-3, fp8BaseWeights",
    "anchor": "minimal script",
}
#: the pipeline's model that examples/smollm2-reasoning.yaml trains, judged against the issue's targets
CHOSEN = "shuffle-lr1e-3"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _cell(scores: list[dict[str, Any]], benchmark: str, model: str, mode: str) -> dict[str, Any] | None:
    for score in scores:
        if (score["benchmark"], score["model"], score["mode"]) == (benchmark, model, mode):
            return score
    return None


def _fmt(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    return (
        f"{100 * cell['accuracy']:.1f}% [{100 * cell['ci_low']:.0f}–{100 * cell['ci_high']:.0f}] · "
        f"{100 * cell['compliance']:.0f}% · {cell['mean_thinking_tokens']:.0f}"
    )


def table(scores: list[dict[str, Any]], benchmark: str) -> list[str]:
    lines = [
        f"**{NAMES.get(benchmark, benchmark)}** (`{benchmark}`, n = "
        f"{next((s['n'] for s in scores if s['benchmark'] == benchmark), 0)}): accuracy [95% Wilson] · compliance "
        "· mean thinking tokens",
        "",
        "| model | reasoning on | reasoning off | on − off (points) |",
        "|---|---|---|---:|",
    ]
    for model in MODELS:
        on, off = _cell(scores, benchmark, model, "on"), _cell(scores, benchmark, model, "off")
        if on is None and off is None:
            continue
        gap = f"{100 * (on['accuracy'] - off['accuracy']):+.1f}" if on and off else "—"
        lines.append(f"| {LABEL[model]} | {_fmt(on)} | {_fmt(off)} | {gap} |")
    return [*lines, ""]


def targets(scores: list[dict[str, Any]], benchmark: str) -> list[str]:
    """The issue's targets on one split, each computed from the cells (met or missed, with the figures)."""

    def acc(model: str, mode: str) -> float:
        cell = _cell(scores, benchmark, model, mode)
        return 100 * cell["accuracy"] if cell else float("nan")

    def comp(model: str, mode: str) -> float:
        cell = _cell(scores, benchmark, model, mode)
        return 100 * cell["compliance"] if cell else float("nan")

    gain = acc(CHOSEN, "on") - acc("base", "on")
    gap = acc(CHOSEN, "on") - acc(CHOSEN, "off")
    least = min(comp(CHOSEN, "on"), comp(CHOSEN, "off"))
    versus = acc(CHOSEN, "on") - acc("anchor", "on")
    rows = [
        ("trained on − base on ≥ 50 points", f"{gain:+.1f}", gain >= 50),
        ("trained on − trained off ≥ 30 points", f"{gap:+.1f}", gap >= 30),
        ("compliance ≥ 95% in both modes", f"{least:.1f}% (lower of the two)", least >= 95),
        ("trained on ≥ minimal script on", f"{versus:+.1f}", versus >= 0),
    ]
    lines = [f"Targets on `{benchmark}` for `{CHOSEN}`:", "", "| target | figure | met |", "|---|---:|---|"]
    lines += [f"| {name} | {figure} | {'yes' if ok else '**no**'} |" for name, figure, ok in rows]
    return [*lines, ""]


def plot(scores: list[dict[str, Any]], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = [b for b in NAMES if any(s["benchmark"] == b for s in scores)]
    fig, axes = plt.subplots(2, 2, figsize=(14, 8), sharey=True)
    axes = [ax for row in axes for ax in row][: len(benchmarks)]
    for ax, benchmark in zip(axes, benchmarks, strict=True):
        models = [m for m in MODELS if _cell(scores, benchmark, m, "on")]
        for offset, mode in ((-0.2, "on"), (0.2, "off")):
            cells = [_cell(scores, benchmark, m, mode) for m in models]
            values = [100 * c["accuracy"] if c else 0 for c in cells]
            errors = [
                [max(0.0, 100 * (c["accuracy"] - c["ci_low"])) if c else 0 for c in cells],
                [max(0.0, 100 * (c["ci_high"] - c["accuracy"])) if c else 0 for c in cells],
            ]
            ax.bar([i + offset for i in range(len(models))], values, 0.4, yerr=errors, capsize=3, label=mode)
        ax.set_xticks(range(len(models)), [LABEL[m].replace(", ", "\n") for m in models], fontsize=6)
        ax.set_title(NAMES[benchmark], fontsize=10)
        ax.axhline(25 if "MC" in NAMES[benchmark] else 0, color="grey", lw=0.8, ls="--")
    axes[0].set_ylabel("accuracy (%), 95% Wilson")
    axes[0].legend(title="reasoning")
    fig.suptitle("SmolLM2-135M-Instruct: base vs trained, reasoning on vs off (one H200)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def _smooth(values: list[float], width: int = 10) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= width:
            total -= values[i - width]
        out.append(total / min(i + 1, width))
    return out


def plot_training(training: dict[str, Any], sweep_curves: dict[str, list[float]], target: Path) -> None:
    """Loss curves: the three 600-step runs (left) and the 150-step sweep (right), 10-step running means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, run in training.items():
        losses = [row["loss"] for row in run.get("curve") or []] or run["summary"].get("losses", [])
        left.plot(range(1, len(losses) + 1), _smooth(losses), label=LABEL.get(name, name))
    left.set_yscale("log")
    left.set_xlabel("optimizer step")
    left.set_ylabel("training loss (10-step mean)")
    left.set_title("600 steps: pipeline runs (64 samples/step), script (32)", fontsize=9)
    left.legend(fontsize=8)
    for name, losses in sweep_curves.items():
        right.plot(range(1, len(losses) + 1), _smooth(losses), label=name)
    right.set_yscale("log")
    right.set_xlabel("optimizer step")
    right.set_title("sweep: LoRA rank x learning rate, 150 steps", fontsize=9)
    right.legend(fontsize=8)
    fig.suptitle("SmolLM2-135M-Instruct LoRA SFT on the curated problems (one H200)")
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def write_report(results: Path, out: Path) -> None:
    """report.md (+ PNGs) from whatever results exist: curation, sweep, training and, once run, full evaluation."""
    full = _load(results / "eval.json") or _load(results / "all.json")  # all: trained and evaluated in one call
    sweep = _load(results / "sweep.json")
    training = _load(results / "all-training.json")
    more = _load(results / "variants-training.json")
    if training is not None and more is not None:
        training = {**more, **training}
    curation = _load(results / "curation.json")
    lines = ["# Outcome benchmark: SmolLM2-135M-Instruct (raw numbers; README.md reads them)", ""]
    lines += ["Generated by `python bench/outcome/outcome.py report` from `results/`.", ""]
    variants = _load(results / "variants.json")
    if full is not None:
        scores = full["eval"]["scores"] + (variants["eval"]["scores"] if variants else [])
        lines += targets(scores, "gpqa_diamond") + targets(scores, "freeform")
        for benchmark in NAMES:
            if any(s["benchmark"] == benchmark for s in scores):
                lines += table(scores, benchmark)
        plot(scores, out / "outcome.png")
        lines += ["![outcome](outcome.png)", ""]
    if training is not None:
        lines += ["## Training (600 steps each; three runs at a time on one H200, so seconds include sharing)", ""]
        lines += ["| run | steps × samples | in-job seconds | process seconds | tokens/s | final loss |"]
        lines += ["|---|---|---:|---:|---:|---:|"]
        for name, run in training.items():
            summary = run["summary"]
            if "losses" in summary:
                row = (
                    f"{summary['steps']} × {summary['batch']}",
                    summary["seconds"],
                    "—",
                    f"{summary['losses'][-1]:.4f}",
                )
            else:
                row = (
                    f"{summary['steps']} × 64",
                    summary["wallSeconds"],
                    f"{summary['tokensPerSecond']:,.0f}",
                    f"{summary['finalLoss']:.4f}",
                )
            lines.append(f"| {LABEL.get(name, name)} | {row[0]} | {row[1]} | {run['seconds']} | {row[2]} | {row[3]} |")
        lines.append("")
        curves = {}
        for path in sorted((results / "sweep-curves").glob("*.jsonl")):
            curves[path.stem] = [json.loads(x)["loss"] for x in path.read_text(encoding="utf-8").splitlines()]
        plot_training(training, curves, out / "training.png")
        lines += ["![training](training.png)", ""]
    if sweep is not None:
        lines += ["## Sweep (150 steps × 64 samples each, then 100 held-out questions, reasoning on)", ""]
        lines += ["| run | in-job seconds | final loss | held-out on: accuracy [95%] · compliance · thinking tokens |"]
        lines += ["|---|---:|---:|---|"]
        for name, run in sweep["sweep"].items():
            cell = _cell(sweep["eval"]["scores"], "gpqa_diamond", name, "on")
            summary = run["summary"]
            lines.append(f"| {name} | {summary['wallSeconds']} | {summary['finalLoss']:.4f} | {_fmt(cell)} |")
        lines += ["", f"Evaluation of the four adapters: {sweep['stages']['eval_seconds']} s.", ""]
    if curation is not None:
        summary = curation["summary"]
        kept = {
            k: v
            for k, v in summary.items()
            if k in ("samplesRead", "samplesWritten", "dropped", "reasoningOn", "reasoningOff", "tokenPercentiles")
        }
        lines += [f"## Curation ({curation['seconds']} s, {curation['machine']})", "", "```json"]
        lines += [json.dumps(kept, indent=1), "```", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
