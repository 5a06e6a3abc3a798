"""Token counts by fastokens equal those of Hugging Face `tokenizers` on the job's texts and on adversarial ones,
for the bundled tokenizer and for a Llama-3-style pre-tokeniser; a tokenizer fastokens cannot load, or one it counts
differently, is counted by `tokenizers`, and a spot check that differs makes the counter fall back.

All real parts: two real tokenizers (built from the bundled one, no download) and the real fastokens wheel.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from reasoning_jobs.common.assets import offline_tokenizer_path
from reasoning_jobs.curate import records as rules
from reasoning_jobs.datasets.nemotron_synthetic import generate

fastokens = pytest.importorskip("fastokens", reason="fastokens ships x86_64 Linux wheels only")

#: Llama 3's pre-tokeniser regex (tokenizer.json of meta-llama/Llama-3.1-8B-Instruct)
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
POOLS = [
    "abc XYZ  ",
    " \t\n\r\n",
    "0123456789",
    "éàüßøñ",
    "Привет мир",
    "你好，世界",
    "こんにちは",
    "مرحبا",
    "🙂👍🏽🤖\u200d",
    "\u200b\u200d\ufeff\u00a0\u3000",
    "'s 're 'LL 'D",
    "!!??..,,;;::",
    "\\boxed{42}",
    "ǅǈ ǋİıŞş",
    "\x00\x01\x7f",
    "ﬁ ﬂ Ⅻ ½ ² 𝔘𝔫𝔦",
    "a\r\rb   \n\n   x",
]
SPECIALS = ["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|begin_of_text|>", "<think>", "</think>"]


def adversarial_texts(count: int, seed: int) -> list[str]:
    """Random mixes of scripts, special tokens inside text, whitespace runs, digits and random code points."""
    rng = random.Random(seed)
    texts: list[str] = []
    while len(texts) < count:
        parts: list[str] = []
        for _ in range(rng.randint(0, 30)):
            roll = rng.random()
            if roll < 0.1:
                parts.append(rng.choice(SPECIALS))
            elif roll < 0.75:
                pool = rng.choice(POOLS)
                parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 12))))
            elif roll < 0.9:
                code = rng.randint(1, 0x2FFFF)
                parts.append(chr(code) if not 0xD800 <= code <= 0xDFFF else "x")
            else:
                parts.append(chr(rng.randint(0x20, 0x7E)) * rng.randint(1, 30))
        texts.append("".join(parts))
    return texts


def tokenizer_json(style: str) -> str:
    """The bundled tokenizer as shipped (GPT-2 byte-level pre-tokeniser), or with Llama 3's pre-tokeniser."""
    data = json.loads((offline_tokenizer_path() / "tokenizer.json").read_text())
    if style == "llama3":
        data["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        }
        data["model"]["ignore_merges"] = True
    return json.dumps(data)


def hf_counts(serialised: str, texts: list[str]) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(serialised)
    return [len(tokenizer.encode(text, add_special_tokens=False)) for text in texts]


@pytest.fixture(scope="module")
def job_texts(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Prompts as the job renders them and completions with their end-of-turn, from generated data in several
    languages and scripts (defective samples included)."""
    from reasoning_jobs.curate.tokenization import WorkerTokenizer, load_tokenizer

    root = tmp_path_factory.mktemp("nemotron")
    generate(root, samples=300, seed=21, bad_fraction=0.3, long_chars=8000)
    parsed = []
    for path in sorted(root.rglob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                parsed.append(rules.parse_record(line))
            except rules.RecordError:
                continue
    tokenizer = load_tokenizer(str(offline_tokenizer_path()))
    render, _ = WorkerTokenizer.from_tokenizer(tokenizer, "bundled").tools()
    return render([rules.conversation(r.input, r.reasoning) for r in parsed]) + [
        r.output + "<|eot_id|>" for r in parsed
    ]


@pytest.mark.parametrize("style", ["bundled", "llama3"])
def test_fastokens_counts_like_tokenizers(style: str, job_texts: list[str]) -> None:
    serialised = tokenizer_json(style)
    texts = job_texts + adversarial_texts(4000, seed=len(style))
    fast = fastokens.Tokenizer.from_json_str(serialised)
    assert [len(fast.encode(text)) for text in texts] == hf_counts(serialised, texts)


def test_fastokens_counts_like_tokenizers_with_a_large_trained_vocabulary(job_texts: list[str]) -> None:
    """A Llama-3-style BPE trained here to a 32k vocabulary (the bundled one has 2k merges): long merge chains and
    many merges that share a result, where a reimplementation's tie-breaking would show."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=32_000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=SPECIALS
    )
    tokenizer.train_from_iterator(job_texts + adversarial_texts(3000, seed=7), trainer)
    assert tokenizer.get_vocab_size() > 8000
    texts = job_texts + adversarial_texts(3000, seed=8)
    fast = fastokens.Tokenizer.from_json_str(tokenizer.to_str())
    assert [len(fast.encode(t)) for t in texts] == hf_counts(tokenizer.to_str(), texts)


def test_the_two_pre_tokenisers_count_differently() -> None:
    # What makes the fallback test below meaningful: the same vocabulary split by another regex counts otherwise.
    texts = ["12345678 apples", "we'LL see", "  \n\n  x"]
    assert hf_counts(tokenizer_json("bundled"), texts) != hf_counts(tokenizer_json("llama3"), texts)


def test_worker_counter_is_fastokens_and_counts_like_the_loaded_tokenizer(job_texts: list[str]) -> None:
    import pickle

    from reasoning_jobs.curate.tokenization import SPOT_CHECKS, WorkerTokenizer, load_tokenizer

    tokenizer = load_tokenizer(str(offline_tokenizer_path()))
    spec = pickle.loads(pickle.dumps(WorkerTokenizer.from_tokenizer(tokenizer, "bundled")))  # as a worker gets it
    assert spec.counter_choice().startswith("fastokens")
    _, count = spec.tools()  # the process's counter: other tests may have called it
    checked, mismatched = count.checked, count.mismatched
    assert count.name == "fastokens"
    assert count(job_texts) == [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in job_texts]
    assert (count.checked - checked, count.mismatched - mismatched) == (SPOT_CHECKS, 0)
    assert count.name == "fastokens"


def test_tokenizers_counter_on_request() -> None:
    from reasoning_jobs.curate.tokenization import TokenizerError, WorkerTokenizer, load_tokenizer

    tokenizer = load_tokenizer(str(offline_tokenizer_path()))
    spec = WorkerTokenizer.from_tokenizer(tokenizer, "bundled", counter="tokenizers")
    assert spec.counter_choice() == "tokenizers (asked for)"
    _, count = spec.tools()
    assert count.name == "tokenizers"
    assert count(["a b <|eot_id|>"]) == [len(tokenizer("a b <|eot_id|>", add_special_tokens=False)["input_ids"])]
    with pytest.raises(TokenizerError, match="unknown token counter 'fast'"):
        WorkerTokenizer.from_tokenizer(tokenizer, "bundled", counter="fast")


def test_a_tokenizer_fastokens_cannot_load_is_counted_by_tokenizers(tmp_path: Any) -> None:
    """fastokens has no NFKC normaliser: it refuses the tokenizer, and the job says so and counts with tokenizers."""
    from tokenizers import normalizers
    from transformers import PreTrainedTokenizerFast

    from reasoning_jobs.curate.tokenization import WorkerTokenizer, load_tokenizer

    bundled = load_tokenizer(str(offline_tokenizer_path()))
    bundled.backend_tokenizer.normalizer = normalizers.NFKC()
    bundled.save_pretrained(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    spec = WorkerTokenizer.from_tokenizer(tokenizer, str(tmp_path))
    assert spec.counter_choice().startswith("tokenizers (fastokens cannot load this tokenizer: ")
    assert "NFKC" in spec.counter_choice()
    _, count = spec.tools()
    texts = ["ﬁ Ⅻ ½ ²", "plain"]
    assert count.name == "tokenizers"
    assert count(texts) == [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def test_a_fast_tokenizer_that_counts_its_probes_differently_is_not_used() -> None:
    from reasoning_jobs.curate.tokenization import _fast_tokenizer

    reference = tokenizer_json("bundled")
    fast, why = _fast_tokenizer(tokenizer_json("llama3"), lambda texts: hf_counts(reference, texts))
    assert fast is None and "counts" in why and "differently from tokenizers" in why
    fast, why = _fast_tokenizer(reference, lambda texts: hf_counts(reference, texts))
    assert fast is not None and why == ""


def test_a_spot_check_that_differs_recounts_the_call_and_falls_back() -> None:
    """A fastokens tokenizer for another pre-tokeniser stands in for a fastokens bug: the counter must notice
    on its spot checks, return `tokenizers`' counts for the whole call, and stay on `tokenizers`."""
    from reasoning_jobs.curate.tokenization import SPOT_CHECKS, TokenCounter

    reference = tokenizer_json("bundled")
    counter = TokenCounter(lambda texts: hf_counts(reference, texts), fastokens.Tokenizer.from_json_str(reference))
    same = ["hello there", "more text"] * 10
    assert counter(same) == hf_counts(reference, same) and counter.name == "fastokens"
    assert (counter.checked, counter.mismatched) == (SPOT_CHECKS, 0)

    counter = TokenCounter(
        lambda texts: hf_counts(reference, texts), fastokens.Tokenizer.from_json_str(tokenizer_json("llama3"))
    )
    texts = [f"{n} apples and 12345678 pears, we'LL see" for n in range(40)]
    assert counter(texts) == hf_counts(reference, texts)
    assert counter.name == "tokenizers" and counter.mismatched == SPOT_CHECKS
    assert counter(texts[:3]) == hf_counts(reference, texts[:3]) and counter.checked == SPOT_CHECKS  # no more checks


def test_the_result_names_both_counters_where_a_block_fell_back() -> None:
    from reasoning_jobs.curate.pipeline import _token_counter

    fine = {"token_counter": {"name": "fastokens", "checked": 8, "mismatched": 0}}
    fell_back = {"token_counter": {"name": "tokenizers", "checked": 8, "mismatched": 1}}
    assert _token_counter([fine, fine]) == "fastokens"
    assert _token_counter([fine, fell_back]) == "fastokens+tokenizers"
    assert _token_counter([{}]) is None


def test_a_fastokens_error_falls_back_to_tokenizers() -> None:
    """A stand-in for fastokens raising mid-call (e.g. a regex engine limit): no input found here makes the real one
    raise, so this boundary is simulated; the counter must return `tokenizers`' counts and stay on them."""
    from reasoning_jobs.curate.tokenization import TokenCounter

    class Failing:
        def encode(self, text: str) -> Any:
            raise ValueError("match limit exceeded")

    reference = tokenizer_json("bundled")
    counter = TokenCounter(lambda texts: hf_counts(reference, texts), Failing())
    texts = ["hello there", "more text 123"]
    assert counter(texts) == hf_counts(reference, texts)
    assert counter.name == "tokenizers" and counter.mismatched == 1
