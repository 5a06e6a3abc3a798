"""A real Triton server (PyTriton) on loopback hosting a tiny random Llama as `base` and, with a LoRA
adapter, as `trained`. Outputs are compared token for token with the same model run in the test process."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reasoning_jobs.serve.chat_model import ChatModel
from reasoning_jobs.serve.contract import SamplingParameters
from reasoning_jobs.serve.openai_proxy import start_openai_proxy
from reasoning_jobs.serve.pytriton_backend import Ports, chat_models, start_triton
from reasoning_operator.api.contract import (
    FINISH_REASON,
    NUM_OUTPUT_TOKENS,
    REASONING_OFF,
    REASONING_ON,
    SAMPLING_PARAMETERS,
    SYSTEM_PROMPT,
    TEXT_INPUT,
    TEXT_OUTPUT,
)

QUESTION = "What is the capital of France?"


class Server:
    def __init__(self, url: str, openai_url: str, chat: ChatModel) -> None:
        self.url = url
        self.openai_url = openai_url
        self.chat = chat


@pytest.fixture(scope="module")
def server(tiny_llama: tuple[Path, Path], ports: Callable[[], int]) -> Iterator[Server]:
    model_dir, adapter_dir = tiny_llama
    chat = ChatModel(str(model_dir), str(adapter_dir))
    served = chat_models(chat, "base", "trained", stream=True)
    triton_ports = Ports(http=ports(), grpc=ports(), metrics=ports())
    triton = start_triton(served, triton_ports, host="127.0.0.1")
    url = f"http://127.0.0.1:{triton_ports.http}"
    openai_port = ports()
    proxy = start_openai_proxy("127.0.0.1", openai_port, url, [m.name for m in served])
    try:
        yield Server(url, f"http://127.0.0.1:{openai_port}", chat)
    finally:
        proxy.shutdown()
        triton.stop()


def reference(model_dir: Path, adapter_dir: Path | None, system: str, max_tokens: int) -> list[int]:
    """Greedy generation in this process from the prompt the server should build."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        f"{system}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{QUESTION}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    stop = [tokenizer.convert_tokens_to_ids("<|eot_id|>"), tokenizer.convert_tokens_to_ids("<|end_of_text|>")]
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False, eos_token_id=stop, pad_token_id=0)
    new: list[int] = out[0, ids["input_ids"].shape[1] :].tolist()
    return new[:-1] if new and new[-1] in stop else new


def post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def generate(server: Server, model: str, system: str | None, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {TEXT_INPUT: QUESTION, SAMPLING_PARAMETERS: json.dumps({"max_tokens": max_tokens})}
    if system is not None:
        body[SYSTEM_PROMPT] = system
    result: dict[str, Any] = post(f"{server.url}/v2/models/{model}/generate", body)
    return result


def test_health_endpoints_for_probes(server: Server) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/base/ready", "/v2/models/trained/ready"):
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            assert response.status == 200, path
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(server.url + "/v2/models/nonexistent/ready", timeout=10)


def test_system_prompt_reaches_chat_template_and_adapter_changes_output(
    server: Server, tiny_llama: tuple[Path, Path]
) -> None:
    model_dir, adapter_dir = tiny_llama
    tokenizer = server.chat.tokenizer
    expected = {
        ("base", REASONING_ON): reference(model_dir, None, REASONING_ON, 12),
        ("base", REASONING_OFF): reference(model_dir, None, REASONING_OFF, 12),
        ("trained", REASONING_ON): reference(model_dir, adapter_dir, REASONING_ON, 12),
    }
    # Preconditions that make the comparisons below meaningful.
    assert expected[("base", REASONING_ON)] != expected[("base", REASONING_OFF)]
    assert expected[("base", REASONING_ON)] != expected[("trained", REASONING_ON)]
    for (model, system), ids in expected.items():
        result = generate(server, model, system, 12)
        assert result[TEXT_OUTPUT] == tokenizer.decode(ids, skip_special_tokens=False), (model, system)
        assert result[NUM_OUTPUT_TOKENS] in (len(ids), [len(ids)])


def test_max_tokens_is_honoured(server: Server) -> None:
    for max_tokens in (1, 3, 7):
        result = generate(server, "trained", REASONING_OFF, max_tokens)
        tokens = result[NUM_OUTPUT_TOKENS]
        tokens = tokens[0] if isinstance(tokens, list) else tokens
        assert 0 <= tokens <= max_tokens
        reason = result[FINISH_REASON]
        assert reason == ("length" if tokens == max_tokens else "stop")


def test_kserve_infer_through_tritonclient(server: Server) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"))
    inputs = []
    for name, value in (
        (TEXT_INPUT, QUESTION),
        (SYSTEM_PROMPT, REASONING_ON),
        (SAMPLING_PARAMETERS, json.dumps({"max_tokens": 4})),
    ):
        tensor = httpclient.InferInput(name, [1, 1], "BYTES")  # dynamic batching: a batch of one request
        tensor.set_data_from_numpy(np.array([[value.encode()]], dtype=object))
        inputs.append(tensor)
    assert client.get_model_config("base")["max_batch_size"] > 0
    result = client.infer("base", inputs)
    text = result.as_numpy(TEXT_OUTPUT).reshape(-1)[0].decode()
    assert text == generate(server, "base", REASONING_ON, 4)[TEXT_OUTPUT]
    assert int(result.as_numpy(NUM_OUTPUT_TOKENS).reshape(-1)[0]) <= 4
    assert client.is_server_ready() and client.is_model_ready("trained")


def test_concurrent_requests_are_batched_and_answer_as_alone(server: Server, tiny_llama: tuple[Path, Path]) -> None:
    """Requests in flight together are generated as one padded batch (the server's debug log counts them), and
    each greedy answer equals the request's own answer alone: other prompts and longer max_tokens in the same
    batch change nothing, and each stops at its own max_tokens or end of turn."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    cases = [(system, tokens) for system in (REASONING_ON, REASONING_OFF, None) for tokens in (2, 5, 12)]
    alone = {case: generate(server, "trained", *case) for case in cases}
    batches: list[int] = []

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("answered a batch of "):
                batches.append(int(record.getMessage().rsplit(" ", 1)[1]))

    backend = logging.getLogger("reasoning_jobs.serve.pytriton_backend")
    handler, level = Count(), backend.level
    backend.addHandler(handler)
    backend.setLevel(logging.DEBUG)
    try:
        with ThreadPoolExecutor(len(cases)) as pool:
            together = list(pool.map(lambda case: generate(server, "trained", *case), cases * 3))
    finally:
        backend.removeHandler(handler)
        backend.setLevel(level)
    assert max(batches) > 1, batches
    for case, result in zip(cases * 3, together, strict=True):
        assert result == alone[case], case


def test_bad_sampling_parameters_is_a_clear_error(server: Server) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        post(f"{server.url}/v2/models/base/generate", {TEXT_INPUT: "x", SAMPLING_PARAMETERS: '{"max_tokenz": 3}'})
    assert "max_tokenz" in info.value.read().decode()


def test_generate_stream_yields_the_same_text(server: Server) -> None:
    body = {TEXT_INPUT: QUESTION, SYSTEM_PROMPT: REASONING_ON, SAMPLING_PARAMETERS: json.dumps({"max_tokens": 10})}
    request = urllib.request.Request(
        f"{server.url}/v2/models/trained_stream/generate_stream",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    pieces = []
    with urllib.request.urlopen(request, timeout=60) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("data: "):
                pieces.append(json.loads(line.removeprefix("data: "))[TEXT_OUTPUT])
    assert len(pieces) >= 2, "expected several streamed pieces"
    full = server.chat.generate(QUESTION, REASONING_ON, SamplingParameters(max_tokens=10), use_adapter=True)
    ids = server.chat.tokenizer(full.text, add_special_tokens=False)["input_ids"]
    assert "".join(pieces) == server.chat.tokenizer.decode(ids, skip_special_tokens=True)


def test_openai_chat_completions_proxy(server: Server) -> None:
    body = {
        "model": "trained",
        "messages": [{"role": "system", "content": REASONING_OFF}, {"role": "user", "content": QUESTION}],
        "max_tokens": 6,
        "temperature": 0,
    }
    completion = post(f"{server.openai_url}/v1/chat/completions", body)
    assert completion["choices"][0]["message"]["content"] == generate(server, "trained", REASONING_OFF, 6)[TEXT_OUTPUT]
    with pytest.raises(urllib.error.HTTPError) as info:
        post(f"{server.openai_url}/v1/chat/completions", {**body, "model": "gpt-4"})
    assert info.value.code == 404


def test_generate_batch_answers_each_request_as_it_would_alone(server: Server) -> None:
    """ChatModel.generate_batch directly (the batcher decides what shares a batch; here the test does): prompts of
    different lengths and max_tokens in one left-padded batch give each greedy answer exactly as the request
    alone does, in request order."""
    cases = [
        (user, system, SamplingParameters(max_tokens=tokens))
        for user in (QUESTION, "Hi")
        for system in (REASONING_ON, None)
        for tokens in (3, 12)
    ]
    for use_adapter in (False, True):
        alone = [server.chat.generate(*case, use_adapter=use_adapter) for case in cases]
        assert server.chat.generate_batch(cases, use_adapter=use_adapter) == alone, use_adapter
