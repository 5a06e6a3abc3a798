"""The tokenizer side of curation: loading (hub id or local directory), the chat template with the reasoning
system prompt, and token counts without materialising token-id lists."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, get_args

from .records import conversation

_SENTINEL = "\u2063CURATE_SENTINEL\u2063"
#: texts per `encode_batch_fast` call: small chunks stay in cache (measured ~4% faster than 256, same counts)
_COUNT_CHUNK = 64
#: texts of every count call that `tokenizers` counts again, evenly spaced (a block makes two calls)
SPOT_CHECKS = 4
#: texts fastokens must count exactly like `tokenizers` before a worker uses it: scripts, special tokens inside
#: text, whitespace runs and line ends, digits, contractions, emoji sequences, invisible characters
_COUNT_PROBES = (
    "",
    " ",
    "Hello, world! It's 2026; we're testing   spaces\t\ttabs\r\n\r\nand line ends.\n\n\n",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\ndetailed thinking on<|eot_id|>x<|eot_id|>",
    "<think>\nSo 12345678 + 0.5 = ?\n</think>\n\nThe answer is $\\boxed{12345678.5}$.",
    "Grüße aus Köln, ÉCOLE, İstanbul, ǅemal; Привет, мир; 你好，世界；こんにちは；안녕하세요; مرحبا; שלום; नमस्ते",
    "🙂👍🏽👨‍👩‍👧 \u200b\u200d\ufeff\u00a0\u2003x\u3000y \x00\x7f ﬁ Ⅻ ½ ² 𝔘𝔫𝔦 \U0002a6a5",
    "I'LL 'S 'd 'Ve   '' ...!!!??? ::: ---- ____ ```python\nprint(1)\n```",
    "a" * 300 + " " * 40 + "\n" * 7 + "0" * 33,
)


class TokenizerError(ValueError):
    """The tokenizer cannot be loaded or has no usable chat template."""


#: `tokenizer_class` values that name transformers' generic fast tokenizer (Llama 3's among them). Such a
#: tokenizer loads through that class directly: `AutoTokenizer` would resolve to the same class, but importing
#: it imports torch (bundled tokenizer: 3.5 s and 700 MB against 0.8 s and 80 MB, on the 2 cores Ray is
#: starting on).
_GENERIC_FAST = frozenset({"PreTrainedTokenizerFast", "TokenizersBackend"})


def _is_generic_fast(name_or_path: str) -> bool:
    """Whether the tokenizer has a tokenizer.json and a config naming the generic fast class.

    A hub id's files are fetched here (what `AutoTokenizer` would fetch first anyway); an unreachable or gated
    hub raises, so a run without a network fails after one round of the hub client's retries, not two. A path
    that is not a directory, or a repository without those files: False, and `AutoTokenizer` decides.
    """
    directory = Path(name_or_path)
    if directory.is_dir() or name_or_path.startswith((".", "/", "~")):
        config, table = directory / "tokenizer_config.json", directory / "tokenizer.json"
        return config.is_file() and table.is_file() and _names_generic_fast(config)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        config = Path(hf_hub_download(name_or_path, "tokenizer_config.json"))
        return _names_generic_fast(config) and Path(hf_hub_download(name_or_path, "tokenizer.json")).is_file()
    except EntryNotFoundError as error:
        if isinstance(error, LocalEntryNotFoundError):  # offline and not cached: as unreachable as it gets
            raise
        return False


def _names_generic_fast(config: Path) -> bool:
    try:
        return json.loads(config.read_text()).get("tokenizer_class") in _GENERIC_FAST
    except (OSError, ValueError, AttributeError):
        return False


def load_tokenizer(name_or_path: str) -> Any:
    """The tokenizer of a hub id or a local directory, with an error that says what to do."""
    try:
        if _is_generic_fast(name_or_path):
            from transformers import PreTrainedTokenizerFast as Loader
        else:
            from transformers import AutoTokenizer as Loader  # type: ignore[assignment]
        tokenizer = Loader.from_pretrained(name_or_path)
    except Exception as error:
        raise TokenizerError(
            f"cannot load tokenizer {name_or_path!r}: {type(error).__name__}: {error}. "
            "Pass a local tokenizer directory with --tokenizer, or make the hub reachable "
            "(gated models also need HF_TOKEN)."
        ) from None
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizerError(f"tokenizer {name_or_path!r} has no chat template")
    return tokenizer


@lru_cache(maxsize=2)
def cached_tokenizer(name_or_path: str) -> Any:
    """One loaded tokenizer per worker process (Ray reuses worker processes across tasks)."""
    return load_tokenizer(name_or_path)


def end_of_turn(tokenizer: Any) -> tuple[str, str]:
    """(text the template puts before an assistant message, text it puts after it), e.g. ("", "<|eot_id|>").

    Found by rendering a probe conversation, so it follows whatever template the tokenizer carries; falls back
    to ("", eos_token) when the template does not render the prompt as a prefix of the full conversation.
    """
    probe = conversation([{"role": "user", "content": "probe"}], "on")
    prompt = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [*probe, {"role": "assistant", "content": _SENTINEL}], tokenize=False, add_generation_prompt=False
    )
    at = full.find(_SENTINEL)
    if not full.startswith(prompt) or at < 0:
        return "", str(tokenizer.eos_token or "")
    return full[len(prompt) : at], full[at + len(_SENTINEL) :]


#: conversations the fast renderer must render exactly like `apply_chat_template` before it is used
_PROBES: tuple[list[dict[str, str]], ...] = (
    conversation([{"role": "user", "content": "probe"}], "on"),
    conversation(
        [
            {"role": "user", "content": "  first\nturn  "},
            {"role": "assistant", "content": "<think>\nx\n</think>\n\nreply"},
            {"role": "user", "content": "second {{ turn }} <|eot_id|>\t"},
        ],
        "off",
    ),
)


Render = Callable[[list[dict[str, str]]], str]
RenderAll = Callable[[list[list[dict[str, str]]]], list[str]]
Count = Callable[[list[str]], list[int]]


def _template_renderer(template_source: str, variables: dict[str, Any]) -> Render:
    """Render `template_source`, compiled by transformers, the way `apply_chat_template` renders it for
    `tokenize=False, add_generation_prompt=True` and no tools or documents (raises ImportError where this
    transformers version lacks the private helpers).

    `apply_chat_template` ends in `compiled_template.render(messages=chat, tools=None, documents=None,
    add_generation_prompt=..., **special_tokens_map)`; everything before it (message normalisation, copying into
    plain JSON types, reasoning-field aliases) is the identity for messages that are dicts of string `role` and
    `content`, which is all `records.parse_record` produces.
    """
    from transformers.utils.chat_template_utils import _compile_jinja_template

    template = _compile_jinja_template(template_source)
    # `Template.render(**v)` is `concat(root_render_func(new_context(v)))`, and `new_context` copies the template's
    # globals (a ChainMap) into a fresh dict on every call; passing that dict ready-made (`shared=True` takes it
    # as is) renders the same text without the copy.
    context = {**template.globals, **variables, "tools": None, "documents": None, "add_generation_prompt": True}
    concat, root, new_context = template.environment.concat, template.root_render_func, template.new_context

    def render(messages: list[dict[str, str]]) -> str:
        return str(concat(root(new_context({**context, "messages": messages}, shared=True))))

    return render


def _template_parts(tokenizer: Any) -> tuple[str, dict[str, Any]] | None:
    """(template source, template variables) where the compiled template renders exactly like the tokenizer's
    `apply_chat_template` on the probe conversations; None where it does not (or cannot be built)."""
    try:
        source = tokenizer.get_chat_template()
        variables = _template_variables(dict(tokenizer.special_tokens_map))
        if not isinstance(source, str) or not isinstance(variables, dict):
            return None
        render = _template_renderer(source, variables)
        for probe in _PROBES:
            if render(probe) != tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True):
                return None
    except Exception:  # private transformers API: a version without it renders the ordinary way
        return None
    return source, variables


def _template_variables(special_tokens: dict[str, Any]) -> Any:
    """The special-token variables as `apply_chat_template` passes them: rebuilt from plain JSON types by newer
    transformers (`_plain_template_data`), as they are by older ones (5.17 passes `special_tokens_map` itself)."""
    try:
        from transformers.utils.chat_template_utils import _plain_template_data
    except ImportError:
        return special_tokens
    return _plain_template_data(special_tokens)


def _compiled_renderer(tokenizer: Any) -> Render | None:
    """The fast renderer for this tokenizer's template, or None where it would not render the same text."""
    parts = _template_parts(tokenizer)
    return None if parts is None else _template_renderer(*parts)


@lru_cache(maxsize=2)
def _cached_renderer(tokenizer: Any) -> Render | None:
    return _compiled_renderer(tokenizer)


def render_prompts(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[str]:
    """`apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)` for every conversation
    (messages: dicts of string `role` and `content`), through the compiled template where it renders the same."""
    render = _cached_renderer(tokenizer)
    if render is None:
        rendered = tokenizer.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
        return [str(text) for text in rendered]
    return [render(messages) for messages in conversations]


def _backend_counter(backend: Any) -> Count:
    """Token counts through a `tokenizers.Tokenizer` (special tokens in the text count; none are added),
    `encode_batch_fast` (no offsets: ~1.8x faster than `encode_batch`, same counts) in small chunks."""
    encode = getattr(backend, "encode_batch_fast", None) or backend.encode_batch

    def count(texts: list[str]) -> list[int]:
        counts: list[int] = []
        for i in range(0, len(texts), _COUNT_CHUNK):
            counts.extend(len(encoding) for encoding in encode(texts[i : i + _COUNT_CHUNK], add_special_tokens=False))
        return counts

    return count


def _fast_tokenizer(serialised: str, reference: Count) -> tuple[Any | None, str]:
    """(fastokens' tokenizer for `serialised`, "") where it loads it and counts every probe like `reference`,
    else (None, why not).

    fastokens is a Rust reimplementation of `tokenizers`' encoding (used by vLLM's `fastokens` tokenizer mode):
    the job's token counts take ~1/25 of the time there (single-threaded, bench/curate/README.md). It refuses
    components it does not implement (e.g. the NFKC normaliser) when loading.
    """
    try:
        import fastokens
    except ImportError:
        return None, "fastokens is not installed"
    try:
        fast = fastokens.Tokenizer.from_json_str(serialised)
        fast.no_truncation()
        fast.no_padding()
    except Exception as error:
        return None, f"fastokens cannot load this tokenizer: {error}"
    probes = list(_COUNT_PROBES)
    for text, count in zip(probes, reference(probes), strict=True):
        try:
            differs = len(fast.encode(text)) != count
        except Exception as error:
            return None, f"fastokens fails on {text[:40]!r}: {error}"
        if differs:
            return None, f"fastokens counts {text[:40]!r} differently from tokenizers"
    return fast, ""


class TokenCounter:
    """Token counts of texts (special tokens in the text count; none are added), by fastokens where it was given
    one, else by `reference` (`tokenizers`).

    Every call also counts `SPOT_CHECKS` of its texts with `reference`. Where any differs (or fastokens raises),
    the whole call is counted again by `reference` and this process stops using fastokens: a wrong count would
    drop or misorder a sample silently. `checked` and `mismatched` go into each block's metadata, and the job's
    log and result say which library counted.
    """

    def __init__(self, reference: Count, fast: Any | None = None, reference_name: str = "tokenizers") -> None:
        self._reference = reference
        self._fast = fast
        self._reference_name = reference_name
        self.checked = 0
        self.mismatched = 0

    @property
    def name(self) -> str:
        return "fastokens" if self._fast is not None else self._reference_name

    def __call__(self, texts: list[str]) -> list[int]:
        if self._fast is None or not texts:
            return self._reference(texts)
        encode = self._fast.encode
        try:
            counts = [len(encode(text)) for text in texts]  # per text: the batch calls use threads
        except Exception:  # e.g. a regex engine limit tokenizers' engine does not have
            return self._fall_back(1, texts)
        picked = range(0, len(texts), max(1, len(texts) // SPOT_CHECKS))[:SPOT_CHECKS]
        expected = self._reference([texts[i] for i in picked])
        self.checked += len(picked)
        differ = sum(counts[i] != count for i, count in zip(picked, expected, strict=True))
        return self._fall_back(differ, texts) if differ else counts

    def _fall_back(self, mismatched: int, texts: list[str]) -> list[int]:
        """Count `texts` with `reference`, and keep to it in this process from now on."""
        self.mismatched += mismatched
        self._fast = None
        return self._reference(texts)


def count_tokens(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts of `texts` (special tokens in the text count; none are added), without token-id lists for
    fast tokenizers; others fall back to one `tokenizer(text)` call per text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return _backend_counter(backend)(texts)
    return [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


@dataclass(frozen=True)
class WorkerTokenizer:
    """What a worker needs to render prompts and count tokens, taken by the driver from its loaded tokenizer: the
    Rust tokenizer serialised, the chat template source and its variables. A worker rebuilds them with `tokenizers`
    and transformers' Jinja helpers only, instead of importing `AutoTokenizer` (which imports torch: ~3 s and
    ~500 MB of peak RSS a worker here) and loading the tokenizer again. Empty `backend` (a slow tokenizer, or a
    template the compiled renderer cannot reproduce): the worker loads `name` the ordinary way.
    """

    name: str
    backend: str = field(default="", repr=False)
    template: str = field(default="", repr=False)
    variables: dict[str, Any] = field(default_factory=dict, repr=False)
    key: str = ""
    counter: str = "auto"

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, name: str, counter: str = "auto") -> WorkerTokenizer:
        from reasoning_operator.api import TokenCounter  # the driver's only: workers get the result

        if counter not in get_args(TokenCounter):
            raise TokenizerError(f"unknown token counter {counter!r}: use one of {', '.join(get_args(TokenCounter))}")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        parts = _template_parts(tokenizer)
        if backend is None or parts is None:
            return cls(name=name, counter=counter)
        serialised = backend.to_str()
        key = hashlib.sha256(f"{serialised}\0{parts[0]}\0{sorted(parts[1].items())}".encode()).hexdigest()[:16]
        return cls(name=name, backend=serialised, template=parts[0], variables=parts[1], key=key, counter=counter)

    def counter_choice(self) -> str:
        """The library that will count this tokenizer's tokens, and why not fastokens where not (for the log)."""
        if not self.backend:
            return "transformers (no serialisable fast tokenizer or template)"
        if self.counter == "tokenizers":
            return "tokenizers (asked for)"
        fast, why_not = _fast_tokenizer(self.backend, _backend_counter(self._backend()))
        return f"tokenizers ({why_not})" if fast is None else "fastokens (spot-checked against tokenizers)"

    def _backend(self) -> Any:
        from tokenizers import Tokenizer

        backend = Tokenizer.from_str(self.backend)
        backend.no_truncation()
        backend.no_padding()
        return backend

    def tools(self) -> tuple[RenderAll, TokenCounter]:
        """(`render_prompts`, the token counter) for this tokenizer, built once per process (Ray reuses worker
        processes across tasks)."""
        key = f"{self.key}:{self.counter}"
        if self.key and key in _TOOLS:
            return _TOOLS[key]
        if not self.backend:
            tokenizer = cached_tokenizer(self.name)
            return partial(render_prompts, tokenizer), TokenCounter(
                partial(count_tokens, tokenizer), None, "transformers"
            )
        reference = _backend_counter(self._backend())
        fast = _fast_tokenizer(self.backend, reference)[0] if self.counter == "auto" else None
        render = _template_renderer(self.template, self.variables)
        _TOOLS[key] = tools = (lambda conversations: [render(m) for m in conversations], TokenCounter(reference, fast))
        return tools


_TOOLS: dict[str, tuple[RenderAll, TokenCounter]] = {}
