"""The model card (README.md) of an exported model: the recipe, the curated data's summary and the scores,
read from the run's own summaries, so the card says what this model was made from and how it did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from reasoning_operator.api import ExportStageConfig
from reasoning_operator.api.contract import SUMMARY_FILE


def _summary(directory: str) -> dict[str, Any]:
    try:
        loaded = json.loads((Path(directory) / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _dataset_lines(curation: dict[str, Any]) -> list[str]:
    if not curation:
        return ["No curation summary was found."]
    lines = [
        f"- samples read: {curation.get('samplesRead', 0)}, written: {curation.get('samplesWritten', 0)}",
        f"- reasoning on: {curation.get('reasoningOn', 0)}, off: {curation.get('reasoningOff', 0)}",
    ]
    dropped = curation.get("dropped") or {}
    if dropped:
        lines.append("- dropped: " + ", ".join(f"{rule} {count}" for rule, count in sorted(dropped.items())))
    return lines


def _eval_lines(evaluation: dict[str, Any]) -> list[str]:
    accuracies = evaluation.get("accuracies") or []
    if not accuracies:
        return ["No evaluation results were found."]
    lines = ["| benchmark | model | reasoning | n | accuracy | 95% CI |", "|---|---|---|---|---|---|"]
    for a in sorted(accuracies, key=lambda a: (a["benchmark"], a["model"], a["mode"])):
        lines.append(
            f"| {a['benchmark']} | {a['model']} | {a['mode']} | {a.get('n', 0)} | {a['accuracy']:.3f} "
            f"| [{a.get('ciLow', 0.0):.3f}, {a.get('ciHigh', 1.0):.3f}] |"
        )
    return lines


#: Where and how the job ran, not what made the model.
_NOT_RECIPE = ("acceptedGpuProducts", "resources", "backoffLimit")


def _recipe(config: ExportStageConfig) -> dict[str, Any]:
    wire = {k: v for k, v in config.training.to_wire().items() if k not in _NOT_RECIPE}
    if config.training.method != "lora":
        wire.pop("lora", None)
    return wire


def model_card(config: ExportStageConfig, name: str, kind: str) -> str:
    """`kind`: 'merged' (standalone weights) or 'adapter' (PEFT, needs the base model)."""
    base = config.model.name
    tags = ["reasoning", "sft", "reasoning-operator"] + (["peft", "lora"] if kind == "adapter" else [])
    front = {"base_model": base, "library_name": "peft" if kind == "adapter" else "transformers", "tags": tags}
    what = (
        f"The PEFT adapter trained on `{base}`: load it with `PeftModel.from_pretrained(base, this_dir)`."
        if kind == "adapter"
        else f"`{base}` fine-tuned ({config.training.method}), weights merged: load it with "
        "`AutoModelForCausalLM.from_pretrained(this_dir)`; the tokenizer carries the chat template."
    )
    recipe = yaml.safe_dump(_recipe(config), sort_keys=True).rstrip()
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        what,
        "",
        "## Recipe",
        "",
        "```yaml",
        recipe,
        "```",
        "",
        "## Training data",
        "",
        *_dataset_lines(_summary(config.curated_dir)),
        "",
        "## Evaluation",
        "",
        *_eval_lines(_summary(config.evaluation_dir)),
        "",
        "Made by reasoning-operator.",
        "",
    ]
    return "\n".join(lines)
