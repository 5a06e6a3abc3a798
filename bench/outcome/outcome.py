"""Outcome benchmark: does the pipeline teach SmolLM2-135M-Instruct to reason? (bench/outcome/README.md)

    # here (CPU): data, held-out sets and the pipeline's curation stage
    python bench/outcome/outcome.py prepare --out PREP
    # on one GPU (device_call.sh): the model from the GGUF, then the (rank, lr) sweep, or the three 600-step
    # trainings at once (all) and their evaluation (in the same call, or in a later `eval` after --skip-eval)
    python bench/outcome/outcome.py device --prep PREP --gguf FILE --phase sweep|all|eval --out RESULTS_DIR
    # on one GPU, the pipeline end to end with serving: train the example (`train`), then serve it with the
    # serve job (PyTriton, GPU) and score it with the evaluation job through tritonclient (`serve-eval`)
    python bench/outcome/outcome.py device --prep PREP --gguf FILE --phase train|serve-eval --out RESULTS_DIR
    # here: report.md and outcome.png from the results
    python bench/outcome/outcome.py report --results bench/outcome/results

Training runs the project's job (`reasoning train --config`, the config the operator would write from
examples/smollm2-reasoning.yaml); the anchor runs bench/outcome/minimal_sft.py on the same curated file; every
model is evaluated by direct_eval.py (the evaluation job's code, transformers instead of Triton as transport);
`serve-eval` (served_eval.py) runs the serve and evaluation jobs themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MANIFEST = ROOT / "examples" / "smollm2-reasoning.yaml"
SAMPLES = 24_000
EVAL_QUESTIONS = 200
#: the sweep: (LoRA rank, learning rate) at SWEEP_STEPS steps of the example's batch
SWEEP = [(64, 2e-4), (64, 1e-3), (64, 3e-3), (16, 1e-3)]
SWEEP_STEPS = 150


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT / "operator"), str(ROOT / "jobs"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _reasoning(args: list[str], log: Path) -> float:
    """Run a `reasoning` subcommand as its own process (as the runner does); returns wall seconds."""
    began = time.monotonic()
    with log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "reasoning_operator.cli", *args], stdout=handle, stderr=subprocess.STDOUT,
            env=_env(), check=False,
        )  # fmt: skip
    if done.returncode != 0:
        sys.stdout.write(log.read_text(encoding="utf-8")[-4000:])
        raise SystemExit(f"reasoning {args[0]} failed with {done.returncode}; log {log}")
    return round(time.monotonic() - began, 1)


def _spec(model: str, dataset: str, eval_dir: str) -> Any:
    from reasoning_jobs.local.manifest import load_manifest

    spec = load_manifest(MANIFEST).spec.model_copy(deep=True)
    spec.model.name = model
    spec.dataset.source = dataset
    spec.evaluation.data_dir = eval_dir
    return spec


def prepare(out: Path) -> None:
    """Dataset, held-out sets and curation (NeMo Curator, the CPU stage) into `out`."""
    from reasoning_jobs.common.smollm2 import ensure_model
    from reasoning_jobs.datasets.reasoning_problems import generate, write_eval
    from reasoning_operator.api import stage_configs

    out.mkdir(parents=True, exist_ok=True)
    model = ensure_model()  # the tokenizer templates and counts the prompts
    manifest = generate(out / "dataset", SAMPLES, seed=0)
    write_eval(out / "eval", questions=EVAL_QUESTIONS, seed=1000)
    spec = _spec(str(model), str(out / "dataset"), str(out / "eval"))
    configs = stage_configs(spec, str(out / "run"), "http://127.0.0.1:1")
    config = configs.curation.model_copy(update={"output_dir": str(out / "curated")})
    path = out / "curation.yaml"
    path.write_text(yaml.safe_dump(config.to_wire(), sort_keys=False), encoding="utf-8")
    seconds = _reasoning(["curate", "--config", str(path)], out / "curation.log")
    summary = json.loads((out / "curated" / "summary.json").read_text(encoding="utf-8"))
    record = {"seconds": seconds, "machine": f"{platform.node()} ({os.cpu_count()} CPUs)", "summary": summary}
    record["generated"] = manifest
    (out / "curation.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"seconds": seconds, "written": summary.get("written"), "read": summary.get("read")}))


def _train(prep: Path, model: str, out: Path, name: str, extra: list[str], fp8: bool = False) -> dict[str, Any]:
    from reasoning_operator.api import stage_configs

    spec = _spec(model, str(prep / "dataset"), str(prep / "eval"))
    spec.training.fp8_base_weights = fp8
    config = stage_configs(spec, str(out / "run"), "http://127.0.0.1:1").training
    config = config.model_copy(
        update={"data_path": str(prep / "curated" / "training.jsonl"), "output_dir": str(out / name)}
    )
    out.mkdir(parents=True, exist_ok=True)
    if (out / name / "summary.json").is_file():  # trained on this machine by an earlier call
        timed = out / f"{name}.seconds"
        wall = json.loads((out / name / "summary.json").read_text(encoding="utf-8")).get("wallSeconds", 0.0)
        return _trained(out, name, float(timed.read_text()) if timed.is_file() else float(wall))
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config.to_wire(), sort_keys=False), encoding="utf-8")
    # --no-compile: the compiled, tuned layers cost minutes of start-up that a 135M model never earns back
    seconds = _reasoning(["train", "--config", str(path), "--no-progress", "--no-compile", *extra], out / f"{name}.log")
    (out / f"{name}.seconds").write_text(str(seconds))
    return _trained(out, name, seconds)


def _start_train(
    prep: Path, model: str, out: Path, name: str, extra: list[str], fp8: bool = False
) -> tuple[subprocess.Popen[bytes], Path, float, str]:
    """`_train` without waiting: the job's process, its log, its start time and its output folder's name."""
    from reasoning_operator.api import stage_configs

    spec = _spec(model, str(prep / "dataset"), str(prep / "eval"))
    spec.training.fp8_base_weights = fp8
    config = stage_configs(spec, str(out / "run"), "http://127.0.0.1:1").training
    config = config.model_copy(
        update={"data_path": str(prep / "curated" / "training.jsonl"), "output_dir": str(out / name)}
    )
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config.to_wire(), sort_keys=False), encoding="utf-8")
    log = out / f"{name}.log"
    command = [sys.executable, "-m", "reasoning_operator.cli", "train", "--config", str(path), "--no-progress"]
    handle = log.open("w", encoding="utf-8")
    proc = subprocess.Popen([*command, "--no-compile", *extra], stdout=handle, stderr=subprocess.STDOUT, env=_env())
    return proc, log, time.monotonic(), name


def _trained(out: Path, name: str, seconds: float) -> dict[str, Any]:
    summary = json.loads((out / name / "summary.json").read_text(encoding="utf-8"))
    metrics = out / name / "metrics.jsonl"
    curve = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()] if metrics.is_file() else []
    return {"seconds": seconds, "summary": summary, "curve": curve, "adapter": str(out / name / "adapter")}


def _versions() -> dict[str, str]:
    import peft
    import torch
    import transformers

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    return {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "gpu": gpu}


def _merge(results: dict[str, Any], more: dict[str, Any]) -> None:
    results["stages"].update(more.pop("stages"))
    results.update(more)


def _evaluate_all(
    model: str, prep: Path, trained: dict[str, Any], with_base: bool, out: Path, only: list[str] | None = None
) -> dict[str, Any]:
    """Every model through the same evaluation, one at a time, each written to `out` as it finishes (a call
    that runs out of time keeps the models already scored; a later `eval --only` call does the rest)."""
    from direct_eval import Generator, evaluate

    generator = Generator(model, {n: t["adapter"] for n, t in trained.items()}, "cuda")
    models: dict[str, str | None] = {"base": None} if with_base else {}
    models.update({n: n for n in trained})
    if only:
        models = {n: a for n, a in models.items() if n in only}
    began = time.monotonic()
    merged: dict[str, Any] = {"scores": [], "seconds": {}, "examples": {}}
    for name, adapter in models.items():
        scored = evaluate(
            generator, {name: adapter}, prep / "eval", ["gpqa_diamond", "gpqa_main"], ["on", "off"], 384,
            batch=400, freeform=["freeform", "freeform_hard"],
        )  # fmt: skip
        merged["scores"] += scored["scores"]
        merged["seconds"].update(scored["seconds"])
        merged["examples"].update(scored["examples"])
        (out / f"eval-{name}.json").write_text(json.dumps(scored) + "\n", encoding="utf-8")
        print(name, scored["seconds"], flush=True)
    return {
        "stages": {"eval_seconds": round(time.monotonic() - began, 1)},
        "training": {n: {k: v for k, v in t.items() if k != "adapter"} for n, t in trained.items()},
        "eval": merged,
    }


_FOLDER = {"trained-bf16": "bf16", "trained-fp8": "fp8", "anchor": "anchor"}


def _probe(model: str, adapter: Path) -> dict[str, float]:
    """Seconds per generated token of the serve job's chat model on the GPU, one request at a time (as Triton
    calls it), to size the served evaluation of the next call."""
    from reasoning_jobs.serve.chat_model import ChatModel
    from reasoning_jobs.serve.contract import SamplingParameters
    from reasoning_operator.api.contract import reasoning_system_prompt

    chat = ChatModel(model, str(adapter), device="cuda")
    params = SamplingParameters(max_tokens=384, temperature=0.0)
    probe: dict[str, float] = {}
    for mode, use_adapter in (("on", True), ("off", True), ("on", False), ("off", False)):
        began = time.monotonic()
        out = chat.generate("What is 37 * 24 + 15?", reasoning_system_prompt(mode), params, use_adapter=use_adapter)
        seconds = time.monotonic() - began
        name = f"{'trained' if use_adapter else 'base'}_{mode}"
        probe[f"{name}_tokens"] = out.num_output_tokens
        probe[f"{name}_seconds"] = round(seconds, 2)
    return probe


def device(
    prep: Path,
    gguf: Path,
    phase: str,
    out: Path,
    state: Path,
    skip_eval: bool = False,
    only: list[str] | None = None,
    limit: int = 50,
) -> None:
    """On the GPU: convert the model once (kept in `state`), then the sweep or the full comparison."""
    from direct_eval import Generator, evaluate

    from reasoning_jobs.common.smollm2 import convert

    out.mkdir(parents=True, exist_ok=True)
    if phase == "check":  # the same code paths on a tiny random model, minutes before the real runs
        from reasoning_jobs.train.tiny_model import build_tiny_llama

        tiny = str(build_tiny_llama(state / "tiny-llama"))
        runs = state / "runs-check"
        steps = ["--max-steps", "3", "--checkpoint-interval", "3"]
        checked = {
            "bf16": _train(prep, tiny, runs, "bf16", steps),
            "fp8": _train(prep, tiny, runs, "fp8", steps, fp8=True),
        }
        generator = Generator(tiny, {n: t["adapter"] for n, t in checked.items()}, "cuda")
        scored = evaluate(
            generator,
            {"base": None, "bf16": "bf16"},
            prep / "eval",
            ["gpqa_diamond"],
            ["on", "off"],
            16,
            4,
            freeform=["freeform"],
        )
        print(json.dumps({n: t["seconds"] for n, t in checked.items()}), json.dumps(scored["scores"])[:600])
        return
    model_dir = state / "smollm2-135m-instruct"
    results: dict[str, Any] = {"phase": phase, "versions": _versions(), "stages": {}}
    if not (model_dir / "config.json").is_file():
        began = time.monotonic()
        convert(gguf, model_dir)
        results["stages"]["convert_seconds"] = round(time.monotonic() - began, 1)
    model = str(model_dir)
    runs = state / f"runs-{phase}"
    runs.mkdir(parents=True, exist_ok=True)
    if phase == "sweep":
        trained: dict[str, Any] = {}
        for rank, lr in SWEEP:
            name = f"r{rank}-lr{lr:g}"
            extra = ["--max-steps", str(SWEEP_STEPS), "--checkpoint-interval", str(SWEEP_STEPS)]
            extra += ["--lora-rank", str(rank), "--lora-alpha", str(2 * rank), "--learning-rate", str(lr)]
            trained[name] = _train(prep, model, runs, name, extra)
            print(name, trained[name]["seconds"], "s", trained[name]["summary"].get("finalLoss"), flush=True)
        generator = Generator(model, {n: t["adapter"] for n, t in trained.items()}, "cuda")
        began = time.monotonic()
        scored = evaluate(generator, {n: n for n in trained}, prep / "eval", ["gpqa_diamond"], ["on"], 384, 100, 2048)
        results["stages"]["eval_seconds"] = round(time.monotonic() - began, 1)
        results["sweep"] = {n: {k: v for k, v in t.items() if k != "adapter"} for n, t in trained.items()}
        results["eval"] = scored
    elif phase == "all":
        # the three trainings at once on the one GPU (a 135M model leaves it mostly idle; the device time is
        # short), then every model through the same evaluation. Wall times include that contention.
        runs.mkdir(parents=True, exist_ok=True)
        jobs = {
            "trained-bf16": _start_train(prep, model, runs, "bf16", []),
            "trained-fp8": _start_train(prep, model, runs, "fp8", [], fp8=True),
        }
        anchor_dir = runs / "anchor"
        began = time.monotonic()
        anchor_log = (runs / "anchor.log").open("w", encoding="utf-8")
        anchor_proc = subprocess.Popen(
            [sys.executable, str(HERE / "minimal_sft.py"), "--model", model, "--data",
             str(prep / "curated" / "training.jsonl"), "--out", str(anchor_dir)],
            env=_env(), stdout=anchor_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        trained = {}
        for name, (proc, log, started, folder) in jobs.items():
            if proc.wait() != 0:
                sys.stdout.write(log.read_text(encoding="utf-8")[-3000:])
                raise SystemExit(f"training {name} failed")
            trained[name] = _trained(runs, folder, round(time.monotonic() - started, 1))
        if anchor_proc.wait() != 0:
            sys.stdout.write((runs / "anchor.log").read_text(encoding="utf-8")[-3000:])
            raise SystemExit("anchor failed")
        summary = json.loads((anchor_dir / "summary.json").read_text(encoding="utf-8"))
        trained["anchor"] = {"seconds": round(time.monotonic() - began, 1), "summary": summary}
        trained["anchor"]["adapter"] = str(anchor_dir / "adapter")
        print({n: t["seconds"] for n, t in trained.items()}, flush=True)
        partial = {n: {k: v for k, v in t.items() if k != "adapter"} for n, t in trained.items()}
        for folder in (out, state):
            (folder / "all-training.json").write_text(json.dumps(partial) + "\n", encoding="utf-8")
        results["chosen"] = {"from": "examples/smollm2-reasoning.yaml"}
        if not skip_eval:
            _merge(results, _evaluate_all(model, prep, trained, with_base=True, out=out))
    elif phase == "train":  # the example's training alone, for `serve-eval` in a later call
        results["training"] = _train(prep, model, runs, "example", [])
        results["probe"] = _probe(model, Path(results["training"]["adapter"]))
        print(json.dumps({"seconds": results["training"]["seconds"], "probe": results["probe"]}), flush=True)
        results["eval"] = {"scores": []}
    elif phase == "serve-eval":  # the adapter that `train` left on this machine, served and evaluated
        from served_eval import serve_and_evaluate

        trained_dir = runs.parent / "runs-train" / "example"
        results["training"] = json.loads((state / "train.json").read_text(encoding="utf-8"))["training"]
        served = serve_and_evaluate(model, trained_dir, prep / "eval", runs, limit, ["gpqa_diamond"])
        results["stages"].update(served.pop("stages"))
        results.update(served)
        results["eval"] = {"scores": served["served_scores"]}
    elif phase == "eval":  # the adapters an earlier `all --skip-eval` call left on this machine
        done = json.loads((state / "all-training.json").read_text(encoding="utf-8"))
        trained = {
            name: {**run, "adapter": str(runs.parent / "runs-all" / _FOLDER[name] / "adapter")}
            for name, run in done.items()
        }
        results["training"] = done
        _merge(results, _evaluate_all(model, prep, trained, with_base=True, out=out, only=only))
    for folder in (out, state):  # state: the full phase reads the sweep's result on the same machine
        (folder / f"{phase}.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    cells = [(c["benchmark"], c["model"], c["mode"], c["accuracy"], c["compliance"]) for c in results["eval"]["scores"]]
    print(json.dumps(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    d = sub.add_parser("device")
    d.add_argument("--prep", type=Path, required=True)
    d.add_argument("--gguf", type=Path, required=True)
    d.add_argument("--phase", choices=["check", "sweep", "all", "eval", "train", "serve-eval"], required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--state", type=Path, default=Path("/root/smollm2-state"))
    d.add_argument("--skip-eval", action="store_true", help="all: train only (evaluate in a later `eval` call)")
    d.add_argument("--only", default="", help="eval: these models only (comma-separated: base,trained-bf16,...)")
    d.add_argument("--limit", type=int, default=50, help="serve-eval: held-out questions (of 200) asked through Triton")
    r = sub.add_parser("report")
    r.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.what == "prepare":
        prepare(args.out)
    elif args.what == "device":
        only = [n for n in args.only.split(",") if n] or None
        device(args.prep, args.gguf, args.phase, args.out, args.state, args.skip_eval, only, args.limit)
    else:
        from report import write_report

        write_report(args.results, HERE)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
