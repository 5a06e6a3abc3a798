"""A transformers causal LM, with or without a PEFT adapter, answering chat requests (the pytriton backend).

One model in memory serves both names: the adapter is switched off for the base model's requests, so a lock
serialises generation (the adapter switch is not thread-safe). Requests that Triton's dynamic batcher hands over
together are generated as one left-padded batch (`generate_batch`): on a GPU a batch of 64 costs little more than
one request, which is what makes an evaluation of thousands of questions affordable on this backend. With
`serving.gpus` > 0 and CUDA present the model generates on the GPU (`serving_device`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .contract import ChatRequest, SamplingParameters

#: Tokens that end an assistant turn (Llama-3 and ChatML chat formats); whichever the tokenizer has are used.
END_OF_TURN_TOKENS = ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>", "<|im_end|>")


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The chat format's end-of-turn tokens the vocabulary has, plus the tokenizer's EOS.

    Both, not either: a GGUF-converted SmolLM2 has EOS `<|endoftext|>` under some transformers releases while its
    template ends a turn with `<|im_end|>`, and a model stopped only at EOS writes past its turn."""
    vocab = tokenizer.get_vocab()
    ids = [int(vocab[token]) for token in END_OF_TURN_TOKENS if token in vocab]
    if tokenizer.eos_token_id is not None and int(tokenizer.eos_token_id) not in ids:
        ids.append(int(tokenizer.eos_token_id))
    return ids


@dataclass(frozen=True)
class Generation:
    text: str
    num_output_tokens: int
    finish_reason: str


def serving_device(gpus: int, cuda_available: bool) -> str:
    """Where the chat model generates: the GPU when the serving spec asks for one and CUDA is there, else the
    CPU (a `reasoning run` on a machine without a GPU keeps working with the spec's default of one GPU)."""
    return "cuda" if gpus > 0 and cuda_available else "cpu"


class ChatModel:
    """Loads the model (and adapter) once; `generate`/`stream` answer one chat request each."""

    def __init__(
        self,
        model_path: str,
        adapter_path: str | None = None,
        tokenizer_path: str | None = None,
        device: str = "cpu",
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(tokenizer_path or model_path)
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError(f"tokenizer at {tokenizer_path or model_path} has no chat template")
        model: Any = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.has_adapter = adapter_path is not None
        if adapter_path is not None:
            from peft import PeftModel

            if not (Path(adapter_path) / "adapter_config.json").is_file():
                raise FileNotFoundError(f"adapter_path {adapter_path}: no adapter_config.json (not a PEFT adapter)")
            model = PeftModel.from_pretrained(model, adapter_path)
        self.device = device
        self.model: Any = model.to(device).eval()
        self.stop_token_ids = end_of_turn_ids(self.tokenizer)
        self.pad_token_id = int(self.tokenizer.pad_token_id or self.stop_token_ids[0])
        if self.tokenizer.pad_token is None:  # batches are padded; masked out, so any token will do
            self.tokenizer.pad_token = self.tokenizer.convert_ids_to_tokens(self.pad_token_id)
        self._lock = threading.Lock()

    def prompt(self, user: str, system: str | None) -> str:
        """The templated prompt: system message (reasoning toggle) + user message + assistant header."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        text: str = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text

    def _generate_kwargs(self, user: str, system: str | None, params: SamplingParameters) -> dict[str, Any]:
        encoded = self.tokenizer(self.prompt(user, system), add_special_tokens=False, return_tensors="pt")
        return {**{name: tensor.to(self.device) for name, tensor in encoded.items()}, **self._sampling_kwargs(params)}

    def _sampling_kwargs(self, params: SamplingParameters) -> dict[str, Any]:
        sample = params.temperature > 0.0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens,
            "do_sample": sample,
            "eos_token_id": self.stop_token_ids,
            "pad_token_id": self.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    def _adapter_off(self, use_adapter: bool) -> Any:
        from contextlib import nullcontext

        if self.has_adapter and not use_adapter:
            return self.model.disable_adapter()
        return nullcontext()

    def _finish(self, new_ids: list[int], params: SamplingParameters) -> Generation:
        stopped = bool(new_ids) and new_ids[-1] in self.stop_token_ids
        content_ids = new_ids[:-1] if stopped else new_ids
        text = self.tokenizer.decode(content_ids, skip_special_tokens=False)
        reason = "stop" if stopped or len(new_ids) < params.max_tokens else "length"
        return Generation(text=text, num_output_tokens=len(content_ids), finish_reason=reason)

    def generate(self, user: str, system: str | None, params: SamplingParameters, use_adapter: bool) -> Generation:
        if use_adapter and not self.has_adapter:
            raise ValueError("this server was started without an adapter")
        kwargs = self._generate_kwargs(user, system, params)
        prompt_length = int(kwargs["input_ids"].shape[1])
        with self._lock, self._adapter_off(use_adapter), self._torch.inference_mode():
            if params.seed is not None:
                self._torch.manual_seed(params.seed)
            output = self.model.generate(**kwargs)
        return self._finish(output[0, prompt_length:].tolist(), params)

    def generate_batch(self, requests: Sequence[ChatRequest], use_adapter: bool) -> list[Generation]:
        """Answers in request order. Requests that sample alike (temperature, top_p) go through `generate` as
        one left-padded batch run to the longest `max_tokens` of the group, each answer cut at its own
        `max_tokens` and first end-of-turn token: for greedy decoding that is exactly what the request alone
        gives (the tokens before a cut do not depend on what comes after it). A seeded request runs alone, so
        its seed means the same whatever else is in flight."""
        if use_adapter and not self.has_adapter:
            raise ValueError("this server was started without an adapter")
        groups: dict[tuple[Any, ...], list[int]] = {}
        for index, (_, _, params) in enumerate(requests):
            alike = ("seed", index) if params.seed is not None else (params.temperature, params.top_p)
            groups.setdefault(alike, []).append(index)
        answers: dict[int, Generation] = {}
        for indices in groups.values():
            if len(indices) == 1:
                answers[indices[0]] = self.generate(*requests[indices[0]], use_adapter=use_adapter)
                continue
            together = self._generate_together([requests[i] for i in indices], use_adapter)
            answers.update(zip(indices, together, strict=True))
        return [answers[index] for index in range(len(requests))]

    def _generate_together(self, requests: Sequence[ChatRequest], use_adapter: bool) -> list[Generation]:
        params = [p for _, _, p in requests]
        kwargs = self._sampling_kwargs(params[0])  # the group samples alike
        encoded = self.tokenizer(
            [self.prompt(user, system) for user, system, _ in requests],
            add_special_tokens=False,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )
        kwargs.update({name: tensor.to(self.device) for name, tensor in encoded.items()})
        kwargs["max_new_tokens"] = max(p.max_tokens for p in params)
        width = int(encoded["input_ids"].shape[1])
        with self._lock, self._adapter_off(use_adapter), self._torch.inference_mode():
            output = self.model.generate(**kwargs)
        answers = []
        for row, request_params in zip(output[:, width:].tolist(), params, strict=True):
            row = row[: request_params.max_tokens]
            stop = next((i for i, token in enumerate(row) if token in self.stop_token_ids), None)
            answers.append(self._finish(row if stop is None else row[: stop + 1], request_params))
        return answers

    def stream(self, user: str, system: str | None, params: SamplingParameters, use_adapter: bool) -> Iterator[str]:
        """Text pieces as they are generated (for the decoupled `_stream` models); stops at end of turn."""
        from transformers import TextIteratorStreamer

        if use_adapter and not self.has_adapter:
            raise ValueError("this server was started without an adapter")
        kwargs = self._generate_kwargs(user, system, params)
        streamer: Any = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with self._adapter_off(use_adapter), self._torch.inference_mode():
                    if params.seed is not None:
                        self._torch.manual_seed(params.seed)
                    self.model.generate(**kwargs, streamer=streamer)
            except BaseException as error:  # re-raised in the caller's thread
                errors.append(error)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, daemon=True)
            worker.start()
            for piece in streamer:
                if piece:
                    yield piece
            worker.join()
        if errors:
            raise errors[0]
