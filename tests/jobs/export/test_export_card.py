"""The model card alone: what it takes from the run's summaries, and what it says when one is missing."""

from __future__ import annotations

import json
from pathlib import Path

from reasoning_jobs.export.card import model_card
from reasoning_operator.api import ExportSpec, ExportStageConfig, ModelSpec, TrainingSpec


def _config(run: Path, method: str) -> ExportStageConfig:
    return ExportStageConfig(
        model=ModelSpec(name="org/base-8b"),
        training=TrainingSpec.model_validate({"method": method, "maxSteps": 30, "checkpointInterval": 10}),
        export=ExportSpec(),
        trained_dir=str(run / "train"),
        curated_dir=str(run / "curated"),
        evaluation_dir=str(run / "eval"),
        output_dir=str(run / "export"),
    )


def test_card_without_summaries_says_so_and_keeps_only_the_recipe(tmp_path: Path) -> None:
    card = model_card(_config(tmp_path, "full"), "my-run", "merged")
    assert "base_model: org/base-8b" in card and "library_name: transformers" in card
    assert "No curation summary was found." in card and "No evaluation results were found." in card
    assert "maxSteps: 30" in card
    assert "resources" not in card and "acceptedGpuProducts" not in card and "lora:" not in card


def test_adapter_card_carries_the_scores_sorted(tmp_path: Path) -> None:
    (tmp_path / "eval").mkdir()
    accuracies = [
        {"benchmark": "mmlu", "mode": "on", "model": "trained", "accuracy": 0.5, "n": 2},
        {"benchmark": "gpqa_diamond", "mode": "off", "model": "base", "accuracy": 0.25, "ciLow": 0.1, "n": 4},
    ]
    (tmp_path / "eval" / "summary.json").write_text(json.dumps({"accuracies": accuracies}))
    card = model_card(_config(tmp_path, "lora"), "my-run", "adapter")
    assert "library_name: peft" in card and "- lora" in card and "rank: 64" in card
    rows = [line for line in card.splitlines() if line.startswith("| ") and "benchmark" not in line]
    assert rows == [
        "| gpqa_diamond | base | off | 4 | 0.250 | [0.100, 1.000] |",
        "| mmlu | trained | on | 2 | 0.500 | [0.000, 1.000] |",
    ]
