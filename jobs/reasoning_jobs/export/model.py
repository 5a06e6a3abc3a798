"""The exported directories: the merged model (LoRA merged into the base, or the full fine-tune as trained)
with its tokenizer and chat template, and the PEFT adapter, each with its model card."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from reasoning_operator.api import ExportStageConfig

from .card import model_card

log = logging.getLogger("reasoning.export")


class ExportError(Exception):
    """A config or artifact the export cannot work with; the CLI exits 2 with the message."""


def _replace(target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)


def write_merged(config: ExportStageConfig, target: Path, name: str) -> Path:
    """safetensors + config + tokenizer (its chat template inside) + README.md."""
    trained = Path(config.trained_dir)
    _replace(target)
    if config.training.method == "full":
        source = trained / "model"
        if not (source / "config.json").is_file():
            raise ExportError(f"no trained model in {source}: did training finish?")
        shutil.copytree(source, target)
    else:
        adapter = trained / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            raise ExportError(f"no adapter in {adapter}: did training finish?")
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtypes = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
        base = AutoModelForCausalLM.from_pretrained(config.model.name, dtype=dtypes[config.training.precision])
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
        merged.save_pretrained(target, safe_serialization=True)
        AutoTokenizer.from_pretrained(adapter).save_pretrained(target)
        log.info("merged %s into %s", adapter, config.model.name)
    (target / "README.md").write_text(model_card(config, name, "merged"), encoding="utf-8")
    return target


def write_adapter(config: ExportStageConfig, target: Path, name: str) -> Path:
    if config.training.method != "lora":
        raise ExportError("spec.export.adapter needs spec.training.method lora (a full fine-tune has no adapter)")
    source = Path(config.trained_dir) / "adapter"
    if not (source / "adapter_config.json").is_file():
        raise ExportError(f"no adapter in {source}: did training finish?")
    _replace(target)
    shutil.copytree(source, target)
    (target / "README.md").write_text(model_card(config, name, "adapter"), encoding="utf-8")
    return target
