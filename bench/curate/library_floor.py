"""The library floor of curation: the JSON parses, fastText predictions and token counts that any implementation
of the rules must make, timed alone, with every other step (rules, rendering, text joins, writing) done
beforehand and left out of the clock.

    .venv/bin/python bench/curate/library_floor.py --data /tmp/curate-bench/data

Why: a worker cannot take less time than this for its share of the samples, so with the plain reference's time
T_ref, N workers can be at most N * T_ref / floor faster than the reference, with zero engine, zero Python and
perfect balance. `bench_curate.py` runs it in the same run as the reference, in a process of its own per
allocator (the C library's malloc, Ray's jemalloc, and the job's: mimalloc), and reports that bound next to the
measured ratios. The calls are the fastest exact ones known here: orjson, fastText `predict` per text (its list form
returns no scores), and fastokens' `encode` per text (what the job does since session 7). `tokenizers`'
`encode_batch_fast` in chunks of 64 (the job's call before) is timed too: `floor_tokenizers_s` is the floor with it,
comparable with the floors of earlier sessions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.update({"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"})

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "jobs"), str(ROOT / "operator")]

import orjson  # noqa: E402

from reasoning_jobs.common.assets import offline_tokenizer_path  # noqa: E402
from reasoning_jobs.curate import records as rules  # noqa: E402
from reasoning_jobs.curate.language import bundled_lid_model_path  # noqa: E402
from reasoning_jobs.curate.sources import select_files  # noqa: E402
from reasoning_jobs.curate.tokenization import (  # noqa: E402
    WorkerTokenizer,
    _backend_counter,
    _fast_tokenizer,
    end_of_turn,
    load_tokenizer,
)

FILTERS = ["math_v1.1", "chat"]


def measure(root: Path) -> dict[str, Any]:
    import fasttext

    model = fasttext.load_model(str(bundled_lid_model_path()))
    tokenizer = load_tokenizer(str(offline_tokenizer_path()))
    prefix, suffix = end_of_turn(tokenizer)
    spec = WorkerTokenizer.from_tokenizer(tokenizer, str(offline_tokenizer_path()))
    render, _ = spec.tools()
    count = _backend_counter(spec._backend())
    fast = _fast_tokenizer(spec.backend, count)[0]
    if fast is None:
        raise SystemExit("fastokens does not count this tokenizer like tokenizers")
    fast_encode = fast.encode

    lines = [
        line for f in select_files(str(root), FILTERS) for line in Path(f.url).read_bytes().splitlines() if line.strip()
    ]
    # Untimed: which texts reach language ID, and which reach the token counts (the job's rule order).
    language_texts: list[str] = []
    records: list[rules.Record] = []
    for line in lines:
        try:
            record = rules.parse_record(line)
        except rules.RecordError:
            continue
        if "Nano" not in record.used_in_training or rules.think_violation(record.output, record.reasoning):
            continue
        if record.category == "math" and not rules.has_boxed_answer(rules.final_answer(record.output)):
            continue
        language_texts.append(rules.language_text(record.input, record.output))
        records.append(record)
    kept = []
    for record, text in zip(records, language_texts, strict=True):
        labels, scores = model.predict(text, k=1)
        if labels and labels[0] == "__label__en" and scores[0] >= 0.5:
            kept.append(record)
    prompts = render([rules.conversation(r.input, r.reasoning) for r in kept])
    completions = [prefix + r.output + suffix for r in kept]

    loads, predict = orjson.loads, model.predict
    started = time.perf_counter()
    for line in lines:
        loads(line)
    parse_s = time.perf_counter() - started
    started = time.perf_counter()
    for text in language_texts:
        predict(text, k=1)
    language_s = time.perf_counter() - started
    started = time.perf_counter()
    expected = count(prompts), count(completions)
    tokens_s = time.perf_counter() - started
    started = time.perf_counter()
    fast_counts = [len(fast_encode(text)) for text in prompts], [len(fast_encode(text)) for text in completions]
    fast_tokens_s = time.perf_counter() - started
    if fast_counts != expected:
        raise SystemExit("fastokens and tokenizers count these texts differently")
    return {
        "lines": len(lines),
        "language_texts": len(language_texts),
        "counted_samples": len(kept),
        "parse_s": round(parse_s, 2),
        "language_id_s": round(language_s, 2),
        "token_counts_s": round(tokens_s, 2),
        "token_counts_fastokens_s": round(fast_tokens_s, 2),
        "floor_s": round(parse_s + language_s + fast_tokens_s, 2),
        "floor_tokenizers_s": round(parse_s + language_s + tokens_s, 2),
        "allocator": Path(os.environ["LD_PRELOAD"]).name if os.environ.get("LD_PRELOAD") else "libc",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="A dataset generated by bench_curate.py.")
    print(json.dumps(measure(parser.parse_args().data)))


if __name__ == "__main__":
    main()
