"""The job's cheaper per-sample paths give exactly what the ordinary calls give: prompts rendered through the
compiled chat template equal `apply_chat_template`, batched token counts equal `tokenizer(text)`, the whitespace
collapse of the language text equals the regular expression, and the batched language decision equals NeMo
Curator's `keep_document(score_document(text))`."""

from __future__ import annotations

import random
import re
import sys
from typing import Any

import pytest

from reasoning_jobs.common.assets import offline_tokenizer_path
from reasoning_jobs.curate import records as rules
from reasoning_jobs.curate.records import RecordError, parse_record
from reasoning_jobs.datasets.nemotron_synthetic import generate

SAMPLES = 400


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from reasoning_jobs.curate.tokenization import load_tokenizer

    return load_tokenizer(str(offline_tokenizer_path()))


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[rules.Record]:
    root = tmp_path_factory.mktemp("nemotron")
    generate(root, samples=SAMPLES, seed=11, bad_fraction=0.3, long_chars=5000)
    parsed: list[rules.Record] = []
    for path in sorted(root.rglob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                parsed.append(parse_record(line))
            except RecordError:
                continue
    return parsed


def _odd_conversations() -> list[list[dict[str, str]]]:
    rng = random.Random(5)
    pieces = [
        "  lead",
        "trail \n\t",
        "{{ x }}",
        "{% if %}",
        "<|eot_id|>",
        "<|start_header_id|>",
        "é漢字🙂",
        "\u00a0nb",
        "",
    ]
    conversations = []
    for turns in (1, 2, 3, 5, 8):
        messages = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": "".join(rng.sample(pieces, 3)) + f" turn {i}"}
            for i in range(turns)
        ]
        for reasoning in ("on", "off"):
            conversations.append(rules.conversation(messages, reasoning))
    return conversations


def test_compiled_template_renders_exactly_like_apply_chat_template(
    tokenizer: Any, records: list[rules.Record]
) -> None:
    from reasoning_jobs.curate.tokenization import _compiled_renderer, render_prompts

    assert _compiled_renderer(tokenizer) is not None  # the fast path is the one in use
    conversations = [rules.conversation(r.input, r.reasoning) for r in records] + _odd_conversations()
    assert any(len(c) > 3 for c in conversations)  # multi-turn conversations are covered
    expected = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    assert render_prompts(tokenizer, conversations) == expected


def test_template_variables_without_the_newer_sanitiser(tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 5.17 (the GPU image's) has no `_plain_template_data` and its `apply_chat_template` passes the
    special tokens as they are: the renderer's variables must then be those, which for string-valued special tokens
    are what the sanitiser gives (so both transformers lines build the same renderer)."""
    import transformers.utils.chat_template_utils as template_utils

    from reasoning_jobs.curate.tokenization import _template_variables

    special = dict(tokenizer.special_tokens_map)
    sanitised = _template_variables(special)
    monkeypatch.delattr(template_utils, "_plain_template_data", raising=False)
    assert _template_variables(special) is special
    assert sanitised == special


def test_a_template_the_fast_path_cannot_reproduce_falls_back(tokenizer: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from reasoning_jobs.curate import tokenization

    original = tokenizer.apply_chat_template

    def different(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **kwargs) + "x"

    monkeypatch.setattr(tokenizer, "apply_chat_template", different)
    assert tokenization._compiled_renderer(tokenizer) is None


def test_batched_token_counts_equal_tokenizer_calls(tokenizer: Any, records: list[rules.Record]) -> None:
    from reasoning_jobs.curate.tokenization import _COUNT_CHUNK, count_tokens, render_prompts

    texts = render_prompts(tokenizer, [rules.conversation(r.input, r.reasoning) for r in records])
    texts += [r.output + "<|eot_id|>" for r in records]
    texts += ["", " ", "<|eot_id|><|eot_id|>", "a<|start_header_id|>b", "é漢字🙂 " * 50, "x" * 20_000]
    assert len(texts) > 3 * _COUNT_CHUNK
    expected = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    assert count_tokens(tokenizer, texts) == expected


def test_split_join_collapses_exactly_the_whitespace_the_regex_matches() -> None:
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    regex = set(re.findall(r"\s", every))
    assert regex == {c for c in every if len(f"a{c}b".split()) == 2}
    text = "".join(f" {c}{c}x{c}" for c in sorted(regex)) + "\u00a0"
    assert " ".join(text.split()) == re.sub(r"\s+", " ", text).strip()
    messages = [{"role": "user", "content": f"\u2003 a\u00a0\u00a0b\n\n{chr(0x1C)}c "}]
    assert rules.language_text(messages, "<think>\n x</think>\r\n y\u3000") == "a b c x y"


@pytest.mark.parametrize(("lang", "min_score"), [("en", 0.5), ("EN", 0.3), ("en_latn", 0.5), ("fr", 0.2), ("", 0.9)])
def test_batched_language_decision_equals_curators_keep_document(
    records: list[rules.Record], lang: str, min_score: float
) -> None:
    from reasoning_jobs.curate.language import bundled_lid_model_path, make_lang_id_filter

    lang_id = make_lang_id_filter(str(bundled_lid_model_path()), min_score, lang)
    texts = [rules.language_text(r.input, r.output) for r in records]
    texts += ["", "Bonjour tout le monde, comment allez-vous ?", "Guten Tag\nwie geht's", "  \n ", "12345"]
    expected = [lang_id.keep_document(lang_id.score_document(text)) for text in texts]
    assert lang_id.keep_texts(texts) == expected
    if lang.casefold() == "en":
        assert any(expected) and not all(expected)  # both decisions are exercised


def test_rules_run_in_the_same_order_inside_one_curator_stage() -> None:
    # summary.json counts a sample under the first rule that drops it: the chain applies the rules in this order,
    # each on the rows the ones before it kept, and the block crosses Ray Data only as the chain's input/output.
    from reasoning_jobs.curate.pipeline import _build_pipeline
    from reasoning_jobs.curate.stages import StageChain
    from reasoning_operator.api import CurationSpec, CurationStageConfig, DatasetSpec

    config = CurationStageConfig(dataset=DatasetSpec(source="/nowhere"), curation=CurationSpec(), output_dir="/nowhere")
    partition, chain = _build_pipeline(config, [], "model", ("", "")).stages
    assert partition.name == "block_partitioning" and isinstance(chain, StageChain)
    assert [step.name for step in chain.steps] == [
        "read_block",
        "used_in_training_filter",
        "think_tag_filter",
        "boxed_answer_filter",
        "language_filter",
        "chat_template",
        "shard_writer",
    ]
    assert chain.inputs() == chain.steps[0].inputs() and chain.outputs() == chain.steps[-1].outputs()


def test_batches_print_without_their_rows() -> None:
    import pandas as pd

    from reasoning_jobs.curate.stages import Batch

    batch = Batch(dataset_name="d", data=pd.DataFrame({"text": ["x" * 100] * 1000}))
    assert repr(batch) == f"Batch(task_id={batch.task_id!r}, rows=1000)"


def test_worker_tokenizer_renders_and_counts_like_the_loaded_tokenizer(
    tokenizer: Any, records: list[rules.Record]
) -> None:
    import pickle

    from reasoning_jobs.curate.tokenization import WorkerTokenizer

    spec = WorkerTokenizer.from_tokenizer(tokenizer, str(offline_tokenizer_path()))
    assert spec.backend and spec.template and spec.key  # the light path is the one in use
    assert len(repr(spec)) < 200  # Curator logs every stage's repr: the serialised tokenizer stays out of it
    spec = pickle.loads(pickle.dumps(spec))  # as a Ray worker receives it
    render, count = spec.tools()
    conversations = [rules.conversation(r.input, r.reasoning) for r in records] + _odd_conversations()
    prompts = render(conversations)
    assert prompts == [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations
    ]
    texts = prompts + [r.output + "<|eot_id|>" for r in records] + ["", "<|eot_id|>x<|begin_of_text|>", "é" * 999]
    assert count(texts) == [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]


def test_worker_tokenizer_without_a_reproducible_template_loads_the_tokenizer(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasoning_jobs.curate import tokenization

    monkeypatch.setattr(tokenization, "_template_parts", lambda tokenizer: None)
    spec = tokenization.WorkerTokenizer.from_tokenizer(tokenizer, str(offline_tokenizer_path()))
    assert not spec.backend
    render, count = spec.tools()
    conversation = rules.conversation([{"role": "user", "content": " hi "}], "on")
    assert render([conversation]) == [
        tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    ]
    assert count(["a b <|eot_id|>"]) == [len(tokenizer("a b <|eot_id|>", add_special_tokens=False)["input_ids"])]


def test_generic_fast_tokenizer_loads_without_torch_and_equals_autotokenizer(tokenizer: Any) -> None:
    """The bundled tokenizer names transformers' generic fast class, so the job loads it through that class:
    same type, template, special tokens, renderings and token ids as `AutoTokenizer` (what it replaces), and the
    loading process never imports torch."""
    import subprocess

    from transformers import AutoTokenizer

    path = str(offline_tokenizer_path())
    auto = AutoTokenizer.from_pretrained(path)
    assert type(tokenizer) is type(auto)
    assert tokenizer.chat_template == auto.chat_template
    assert tokenizer.special_tokens_map == auto.special_tokens_map
    for messages in _odd_conversations():
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert rendered == auto.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert tokenizer(rendered)["input_ids"] == auto(rendered)["input_ids"]

    probe = (
        "import sys; from reasoning_jobs.curate.tokenization import load_tokenizer; "
        f"load_tokenizer({path!r}); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
