"""Files shipped inside the package, so tests and the local run need no hub download."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def offline_tokenizer_path() -> Path:
    """Small byte-level BPE tokenizer with Llama-3 special tokens and chat template (scripts/make_tokenizer.py)."""
    return ASSETS / "tokenizer"
