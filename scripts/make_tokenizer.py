"""Build the small offline tokenizer the tests and the local run use (no hub download).

Byte-level BPE (any language and script round-trips), Llama-3 special tokens and a Llama-3-style chat
template, saved in Hugging Face format under jobs/reasoning_jobs/assets/tokenizer. Deterministic: rerun it
and the files are identical.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

OUT = Path(__file__).resolve().parents[1] / "jobs" / "reasoning_jobs" / "assets" / "tokenizer"
VOCAB_SIZE = 2048
SPECIAL = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
]
#: Not special: they must survive decode(skip_special_tokens=True), as in the real reasoning data.
ADDED = ["<think>", "</think>"]
CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

WORDS = (  # noqa: SIM905 - a word list is easier to read as prose
    "the a an of to and in is it that for on with as was be by this are or from at which not have has had "
    "you your we our they their he she his her what how why when where who whose explain answer question "
    "think step first then next finally therefore so because if else true false value number sum total "
    "product difference divide multiply add subtract equal equals result solve solution problem compute "
    "find let x y z n k m area length width height circle square triangle angle degree percent ratio prime "
    "even odd integer fraction decimal root power squared cubed write story poem summary list reason "
    "detailed thinking on off system user assistant please help me can could would should about good best "
    "water energy light time year day people world city country history science math chat code data model "
    "boxed frac sqrt times plus minus left right begin end"
).split()


def corpus(n: int = 20000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.4:
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            op = rng.choice(["+", "-", "*", "/"])
            lines.append(f"What is {a} {op} {b}? Let me think. {a} {op} {b} = ... The answer is \\boxed{{{a}}}.")
        else:
            lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))).capitalize() + ".")
    lines += SPECIAL + ADDED
    return lines


def build() -> None:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>",
        model_max_length=131072,
    )
    fast.add_tokens(ADDED)
    fast.chat_template = CHAT_TEMPLATE
    OUT.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(OUT))
    # Normalise JSON so reruns are byte-identical.
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = OUT / name
        if path.exists():
            path.write_text(json.dumps(json.loads(path.read_text()), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    build()
    print(f"wrote {OUT}")
