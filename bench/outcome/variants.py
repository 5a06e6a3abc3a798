"""The order and learning-rate comparison (bench/outcome/README.md): three more 600-step pipeline trainings at
once on the machine an `all` call left warm (model and data in STATE), then the same evaluation.

    python bench/outcome/variants.py OUT [--state /root/smollm2-state]

Ran when examples/smollm2-reasoning.yaml still kept the curriculum order in training; its result made the
example shuffle (`training.shuffle: true`), so `shuffle-lr1e-3` is the example as it is now.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import outcome

VARIANTS = {
    "shuffle-lr1e-3": ["--shuffle"],
    "shuffle-lr2e-4": ["--shuffle", "--learning-rate", "2e-4"],
    "curric-lr2e-4": ["--no-shuffle", "--learning-rate", "2e-4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--state", type=Path, default=Path("/root/smollm2-state"))
    args = parser.parse_args()
    state, out = args.state, args.out
    prep, model = state / "prep", str(state / "smollm2-135m-instruct")
    runs = state / "runs-variants"
    runs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    jobs = {name: outcome._start_train(prep, model, runs, name, extra) for name, extra in VARIANTS.items()}
    trained: dict[str, Any] = {}
    for name, (proc, log, started, folder) in jobs.items():
        if proc.wait() != 0:
            raise SystemExit(f"training {name} failed:\n{log.read_text(encoding='utf-8')[-3000:]}")
        trained[name] = outcome._trained(runs, folder, round(time.monotonic() - started, 1))
        print(name, trained[name]["seconds"], trained[name]["summary"].get("finalLoss"), flush=True)
    partial = {n: {k: v for k, v in t.items() if k != "adapter"} for n, t in trained.items()}
    (out / "variants-training.json").write_text(json.dumps(partial) + "\n", encoding="utf-8")
    results = outcome._evaluate_all(model, prep, trained, with_base=False, out=out)
    (out / "variants.json").write_text(json.dumps(results) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
