"""The asset command's guards: a GGUF whose digest is not the wheel's is refused before any conversion, and a
cached conversion is copied, not converted again."""

from __future__ import annotations

from pathlib import Path

import pytest

from reasoning_jobs.common import smollm2


def test_a_gguf_with_another_digest_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / smollm2.GGUF_NAME
    fake.write_bytes(b"GGUF not the real one")
    with pytest.raises(smollm2.AssetError, match="sha256"):
        smollm2.gguf_file(fake)
    with pytest.raises(smollm2.AssetError, match="no such GGUF"):
        smollm2.gguf_file(tmp_path / "missing.gguf")


def test_a_cached_conversion_is_copied_to_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONING_CACHE", str(tmp_path / "cache"))
    cached = smollm2.cached_model_dir()
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    (cached / "model.safetensors").write_bytes(b"weights")

    def no_conversion(*_args: object) -> Path:
        raise AssertionError("converted although the cache holds the model")

    monkeypatch.setattr(smollm2, "convert", no_conversion)
    out = smollm2.ensure_model(tmp_path / "volume" / "smollm2")
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert smollm2.ensure_model() == cached
