"""`reasoning evaluate` end to end against a real Triton server (PyTriton) whose scripted models answer
what this test dictates: right, wrong, unparseable or failing, with or without think tags."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from reasoning_jobs.evaluate.statistics import wilson_interval
from reasoning_jobs.serve.contract import SamplingParameters
from reasoning_jobs.serve.openai_proxy import start_openai_proxy
from reasoning_jobs.serve.pytriton_backend import Ports, ServedModel, one_by_one, start_triton
from reasoning_operator.api.contract import REASONING_ON

GPQA_QUESTIONS = 12
MMLU_QUESTIONS = 8
OPTION = re.compile(r"^([A-D])\) (.*)$", re.MULTILINE)
KEY = re.compile(r"\n\n(Q|M)(\d+): ")


@dataclass(frozen=True)
class Behaviour:
    outcome: str  # right | wrong | unparseable | error
    think: bool  # whether the response carries a think block


def behaviour(model: str, mode: str, kind: str, i: int) -> Behaviour:
    """The script: what each model does for question i of a benchmark ("Q" = GPQA, "M" = MMLU)."""
    if model == "trained":
        if mode == "off" and kind == "Q" and i == 7:
            outcome = "error"
        elif i % 6 == 5:
            outcome = "unparseable"
        elif i % 4 == 3:
            outcome = "wrong"
        else:
            outcome = "right"
        think = mode == "on" or (kind == "Q" and i == 1)  # one non-compliant "off" answer
    else:
        outcome = "right" if i % 2 == 0 else "wrong"
        think = mode == "on" and i % 3 != 0  # base often ignores the toggle
    return Behaviour(outcome, think)


def correct_text(kind: str, i: int) -> str:
    return f"right answer {i}" if kind == "Q" else f"mmlu right {i}"


def scripted(model: str) -> Callable[[str, str | None, SamplingParameters], tuple[str, int, str]]:
    def answer(user: str, system: str | None, params: SamplingParameters) -> tuple[str, int, str]:
        key = KEY.search(user)
        assert key is not None, user
        kind, i = key.group(1), int(key.group(2))
        mode = "on" if system == REASONING_ON else "off"
        options = dict((text, letter) for letter, text in OPTION.findall(user))
        right = options[correct_text(kind, i)]
        act = behaviour(model, mode, kind, i)
        if act.outcome == "error":
            raise RuntimeError("scripted failure")
        letter = right if act.outcome == "right" else "ABCD"[("ABCD".index(right) + 1) % 4]
        final = "I cannot decide between them." if act.outcome == "unparseable" else f"Answer: {letter}"
        text = f"<think>{'hmm ' * (i + 1)}</think>\n{final}" if act.think else final
        return text, len(text), "stop"  # one "token" per character: thinking tokens = think characters

    return answer


def write_data(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "gpqa_diamond.jsonl").open("w") as handle:
        for i in range(GPQA_QUESTIONS):
            row = {
                "Record ID": f"rec{i}",
                "Question": f"Q{i}: Which statement is right?",
                "Correct Answer": correct_text("Q", i),
                **{f"Incorrect Answer {k}": f"wrong answer {i}.{k}" for k in (1, 2, 3)},
                "High-level domain": "Physics",
            }
            handle.write(json.dumps(row) + "\n")
    rows = [
        {
            "question": f"M{i}: Pick the right one.",
            "subject": "astronomy",
            "choices": [correct_text("M", i) if k == i % 4 else f"mmlu wrong {i}.{k}" for k in range(4)],
            "answer": i % 4,
        }
        for i in range(MMLU_QUESTIONS)
    ]
    pd.DataFrame(rows).to_parquet(data_dir / "mmlu.parquet")


@pytest.fixture(scope="module")
def servers(ports: Callable[[], int]) -> Iterator[tuple[str, str]]:
    """(Triton KServe URL, OpenAI-style URL ending in /v1 in front of the same Triton)."""
    triton_ports = Ports(http=ports(), grpc=ports(), metrics=ports())
    triton = start_triton(
        [ServedModel("trained", one_by_one(scripted("trained"))), ServedModel("base", one_by_one(scripted("base")))],
        triton_ports,
        host="127.0.0.1",
        instances=4,
    )
    url = f"http://127.0.0.1:{triton_ports.http}"
    openai_port = ports()
    proxy = start_openai_proxy("127.0.0.1", openai_port, url, ["trained", "base"])
    try:
        yield url, f"http://127.0.0.1:{openai_port}/v1"
    finally:
        proxy.shutdown()
        triton.stop()


@pytest.fixture(scope="module")
def server(servers: tuple[str, str]) -> str:
    return servers[0]


def run_evaluate(config: dict[str, Any], tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    config_file = tmp_path / "evaluation.yaml"
    config_file.write_text(json.dumps(config))
    command = [sys.executable, "-m", "reasoning_operator.cli", "evaluate", "--config", str(config_file), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=None)


@pytest.fixture(scope="module")
def evaluated(server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp_path = tmp_path_factory.mktemp("evaluate")
    write_data(tmp_path / "data")
    out = tmp_path / "out"
    config = {
        "evaluation": {
            "benchmarks": ["gpqa_diamond", "mmlu"],
            "modes": ["on", "off"],
            "maxTokens": 64,
            "temperature": 0.0,
            "concurrency": 8,
            "seed": 1234,
            "dataDir": str(tmp_path / "data"),
        },
        "serverUrl": server,
        "models": ["trained", "base"],
        "outputDir": str(out),
    }
    return out, run_evaluate(config, tmp_path, "--no-progress")


def expected_counts(model: str, mode: str, kind: str, n: int) -> tuple[int, int, int, float, float]:
    """(correct, unanswered, errors, compliance, mean thinking chars) straight from the script."""
    acts = [behaviour(model, mode, kind, i) for i in range(n)]
    correct = sum(a.outcome == "right" for a in acts)
    unanswered = sum(a.outcome != "right" and a.outcome != "wrong" for a in acts)
    errors = sum(a.outcome == "error" for a in acts)
    answered = [(i, a) for i, a in enumerate(acts) if a.outcome != "error"]
    compliant = [a.think == (mode == "on") for _, a in answered]
    thinking = [len(("hmm " * (i + 1)).strip()) if a.think else 0 for i, a in answered]
    return correct, unanswered, errors, sum(compliant) / len(compliant), sum(thinking) / len(thinking)


def load_scores(out: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    results = json.loads((out / "results.json").read_text())
    return {(s["benchmark"], s["model"], s["mode"]): s for s in results["scores"]}


def test_command_succeeds(evaluated: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    _, process = evaluated
    assert process.returncode == 0, process.stderr[-3000:]


@pytest.mark.parametrize("model", ["trained", "base"])
@pytest.mark.parametrize("mode", ["on", "off"])
@pytest.mark.parametrize(
    ("benchmark", "kind", "n"), [("gpqa_diamond", "Q", GPQA_QUESTIONS), ("mmlu", "M", MMLU_QUESTIONS)]
)
def test_scores_match_the_script(
    evaluated: tuple[Path, subprocess.CompletedProcess[str]], model: str, mode: str, benchmark: str, kind: str, n: int
) -> None:
    out, _ = evaluated
    scores = {
        (s["benchmark"], s["model"], s["mode"]): s for s in json.loads((out / "results.json").read_text())["scores"]
    }
    score = scores[(benchmark, model, mode)]
    correct, unanswered, errors, compliance, thinking = expected_counts(model, mode, kind, n)
    assert (score["n"], score["correct"], score["unanswered"], score["errors"]) == (n, correct, unanswered, errors)
    assert score["accuracy"] == pytest.approx(correct / n)
    assert (score["ci_low"], score["ci_high"]) == pytest.approx(wilson_interval(correct, n))
    assert score["compliance"] == pytest.approx(compliance)
    assert score["mean_thinking_tokens"] == pytest.approx(thinking)


def test_known_figures(evaluated: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    """A few absolute figures, worked out by hand from the script."""
    out, _ = evaluated
    scores = {
        (s["benchmark"], s["model"], s["mode"]): s for s in json.loads((out / "results.json").read_text())["scores"]
    }
    # trained, GPQA, off: i=3,7(error),11 -> 7 is the error; 5,11 unparseable; 3 wrong -> right: 0,1,2,4,6,8,9,10
    assert scores[("gpqa_diamond", "trained", "off")]["correct"] == 8
    assert scores[("gpqa_diamond", "trained", "off")]["unanswered"] == 3
    # Wilson 95% for 8/12
    assert scores[("gpqa_diamond", "trained", "off")]["ci_low"] == pytest.approx(0.3906, abs=1e-4)
    assert scores[("gpqa_diamond", "trained", "off")]["ci_high"] == pytest.approx(0.8619, abs=1e-4)
    # base on GPQA: think tags missing for i % 3 == 0 -> 4 of 12 non-compliant
    assert scores[("gpqa_diamond", "base", "on")]["compliance"] == pytest.approx(8 / 12)


def test_results_json_keeps_every_response(evaluated: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = evaluated
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 1234 and "1234" not in results["shuffle"] and "seed" in results["shuffle"]
    records = results["records"]
    assert len(records) == (GPQA_QUESTIONS + MMLU_QUESTIONS) * 2 * 2
    for record in records:
        assert {"response", "extracted", "is_correct", "correct_letter", "choices", "question_id"} <= record.keys()
        if record["error"] is None:
            assert record["response"]
            assert record["is_correct"] == (record["extracted"] == record["correct_letter"])
        else:
            assert record["response"] is None and record["extracted"] is None and "scripted failure" in record["error"]
    unparseable = [r for r in records if r["response"] and "cannot decide" in r["response"]]
    assert unparseable and all(r["extracted"] is None and not r["is_correct"] for r in unparseable)
    # GPQA's correct answer is first in the data; after the seeded shuffle it lands on several letters.
    gpqa_letters = {r["correct_letter"] for r in records if r["benchmark"] == "gpqa_diamond"}
    assert len(gpqa_letters) >= 3
    # The same question keeps its letter across models and modes (one shuffle per question).
    per_question: dict[str, set[str]] = {}
    for r in records:
        per_question.setdefault(r["question_id"], set()).add(r["correct_letter"])
    assert all(len(letters) == 1 for letters in per_question.values())


def test_reports_and_summary(evaluated: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, process = evaluated
    png = (out / "accuracy.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    markdown = (out / "report.md").read_text()
    assert "accuracy.png" in markdown and "| gpqa_diamond | trained | off | 12 | 0.667 |" in markdown
    page = (out / "report.html").read_text()
    assert '<img src="accuracy.png"' in page and "<table>" in page and "mmlu" in page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reportPath"] == str(out / "report.html")
    assert len(summary["accuracies"]) == 8
    entry = next(a for a in summary["accuracies"] if (a["benchmark"], a["model"], a["mode"]) == ("mmlu", "base", "on"))
    assert entry["accuracy"] == pytest.approx(0.5) and entry["n"] == 8
    assert "gpqa_diamond" in process.stdout and "report:" in process.stdout


def test_openai_endpoint_gives_the_same_scores(
    servers: tuple[str, str], evaluated: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """server_url ending in /v1 → /v1/chat/completions (how the vLLM backend is evaluated); same answers."""
    kserve_out, _ = evaluated
    write_data(tmp_path / "data")
    config = {
        "evaluation": {
            "benchmarks": ["gpqa_diamond"],
            "maxTokens": 64,
            "temperature": 0.0,
            "concurrency": 8,
            "seed": 1234,
            "dataDir": str(tmp_path / "data"),
        },
        "serverUrl": servers[1],
        "models": ["trained", "base"],
        "outputDir": str(tmp_path / "out"),
    }
    process = run_evaluate(config, tmp_path, "--no-progress")
    assert process.returncode == 0, process.stderr[-3000:]
    via_openai = load_scores(tmp_path / "out")
    via_kserve = load_scores(kserve_out)
    assert via_openai.keys() == {("gpqa_diamond", m, mode) for m in ("trained", "base") for mode in ("on", "off")}
    for key, score in via_openai.items():
        assert score == via_kserve[key], key


def test_termination_message_is_compact(server: str, tmp_path: Path) -> None:
    """Full default matrix (3 benchmarks x 2 models x 2 modes) stays under the 4 KiB termination limit."""
    from reasoning_jobs.evaluate.report import evaluation_result
    from reasoning_jobs.evaluate.statistics import score_cell

    scores = [
        score_cell(b, m, mode, [True, False] * 99, [True] * 198, 0, [1234.5] * 198, [True] * 198)
        for b in ("gpqa_diamond", "gpqa_main", "mmlu")
        for m in ("trained", "base")
        for mode in ("on", "off")
    ]
    wire = json.dumps(evaluation_result(scores, "/data/run/evaluation/report.html").to_wire(), separators=(",", ":"))
    assert len(wire.encode()) < 4096


def test_server_unreachable_names_the_url(ports: Callable[[], int], tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    url = f"http://127.0.0.1:{ports()}"
    config = {
        "evaluation": {"benchmarks": ["mmlu"], "dataDir": str(tmp_path / "data")},
        "serverUrl": url,
        "outputDir": str(tmp_path / "out"),
    }
    process = run_evaluate(config, tmp_path, "--no-progress", "--ready-timeout", "2")
    assert process.returncode == 2
    assert url in process.stderr and "not reachable" in process.stderr


def test_unknown_model_is_a_clear_error(server: str, tmp_path: Path) -> None:
    write_data(tmp_path / "data")
    config = {
        "evaluation": {"benchmarks": ["mmlu"], "dataDir": str(tmp_path / "data")},
        "serverUrl": server,
        "models": ["trained", "finetuned-v2"],
        "outputDir": str(tmp_path / "out"),
    }
    process = run_evaluate(config, tmp_path, "--no-progress", "--ready-timeout", "2")
    assert process.returncode == 2 and "finetuned-v2" in process.stderr and server in process.stderr
