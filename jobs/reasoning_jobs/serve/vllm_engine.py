"""One vLLM engine (`AsyncLLM`: continuous batching, paged KV cache) holding the base weights with LoRA on, so
the base model and the trained adapter are served side by side from one copy of the weights.

The engine lives on an event loop of its own (a daemon thread): vLLM's output handler is bound to the loop it
starts on, while PyTriton runs each bound model's handler on a loop of its own. Callers on any loop reach it
through `stream`/`generate`, which forward the engine's deltas with `call_soon_threadsafe`.

The chat template is the tokenizer's, applied here (token ids go to the engine), so what the engine sees is
exactly what a transformers reference generation sees. Generation stops at the end of the assistant turn.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from reasoning_operator.api.contract import THINK_CLOSE

from .chat_model import end_of_turn_ids
from .contract import SamplingParameters

T = TypeVar("T")

#: The end of a reasoning block (Llama-Nemotron / DeepSeek-R1 convention): tokens up to it are thinking tokens.
#: LoRA ranks vLLM accepts for max_lora_rank.
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(frozen=True)
class EngineOptions:
    """What the engine is started with (from ServingSpec; CPU runs want a small KV cache and float32)."""

    model: str
    adapter_path: str | None = None
    adapter_name: str = "trained"
    max_model_len: int = 4096
    max_lora_rank: int = 64
    #: Adapter slots: one adapter is loaded; the CPU build needs a second, empty one (vllm_backend.CPU_LORA_SLOTS).
    max_loras: int = 1
    max_num_seqs: int = 256
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    tokenizer: str | None = None


@dataclass(frozen=True)
class Delta:
    """New text of one request since the last delta; `finish_reason` is set on the last one."""

    text: str
    token_ids: tuple[int, ...]
    finish_reason: str | None = None


@dataclass(frozen=True)
class EngineGeneration:
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    num_output_tokens: int
    thinking_tokens: int
    finish_reason: str


def adapter_rank(adapter_path: str | None, default: int = 64) -> int:
    """The adapter's LoRA rank from its adapter_config.json, rounded up to a rank vLLM supports."""
    import json

    rank = default
    if adapter_path is not None:
        config_file = Path(adapter_path) / "adapter_config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"adapter_path {adapter_path}: no adapter_config.json (not a PEFT adapter)")
        try:
            rank = int(json.loads(config_file.read_text(encoding="utf-8")).get("r", rank))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{config_file}: cannot read the LoRA rank 'r': {error}") from error
    for supported in VLLM_LORA_RANKS:
        if rank <= supported:
            return supported
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")


class VllmChat:
    """`start()` loads the engine; `stream`/`generate` answer one chat request each, from any event loop."""

    def __init__(self, options: EngineOptions) -> None:
        from transformers import AutoTokenizer

        self.options = options
        self.tokenizer: Any = AutoTokenizer.from_pretrained(options.tokenizer or options.model)
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError(f"tokenizer at {options.tokenizer or options.model} has no chat template")
        self.stop_token_ids = end_of_turn_ids(self.tokenizer)
        self.has_adapter = options.adapter_path is not None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-engine", daemon=True)
        self._engine: Any = None
        self._lora: Any = None
        self._ids = itertools.count()

    # -- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine's loop and build the engine on it (blocks until loaded)."""
        self._thread.start()
        self._on_engine_loop(self._build())

    async def _build(self) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.lora.request import LoRARequest
        from vllm.v1.engine.async_llm import AsyncLLM

        o = self.options
        args = AsyncEngineArgs(
            model=o.model,
            tokenizer=o.tokenizer,
            max_model_len=o.max_model_len,
            max_num_seqs=o.max_num_seqs,
            dtype=o.dtype,
            gpu_memory_utilization=o.gpu_memory_utilization,
            tensor_parallel_size=o.tensor_parallel_size,
            # One device needs no multi-process executor (vLLM's CPU build still starts one worker process).
            distributed_executor_backend="uni" if o.tensor_parallel_size == 1 else None,
            enforce_eager=o.enforce_eager,
            enable_lora=self.has_adapter,
            max_lora_rank=o.max_lora_rank if self.has_adapter else None,
            max_loras=o.max_loras,
        )
        self._engine = AsyncLLM.from_engine_args(args)
        if o.adapter_path is not None:
            self._lora = LoRARequest(o.adapter_name, 1, o.adapter_path)
            await self._engine.add_lora(self._lora)  # load it now, not on the first adapter request

    def shutdown(self) -> None:
        """Stop the engine (in-flight requests end with an error) and its loop."""
        if self._engine is not None:
            self._loop.call_soon_threadsafe(self._engine.shutdown)
            self._engine = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    def _on_engine_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def healthy(self) -> bool:
        """The engine answers its health check (its core process is alive)."""
        if self._engine is None:
            return False
        future = asyncio.run_coroutine_threadsafe(self._engine.check_health(), self._loop)
        try:
            await asyncio.wrap_future(future)
        except Exception:
            return False
        return True

    # -- requests --------------------------------------------------------------------------------------------
    def prompt_ids(self, user: str, system: str | None) -> list[int]:
        """The templated prompt's token ids: system message (reasoning toggle) + user + assistant header."""
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        text: str = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _sampling(self, params: SamplingParameters) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            stop_token_ids=self.stop_token_ids,
            skip_special_tokens=True,
            output_kind=RequestOutputKind.DELTA,
        )

    async def stream(
        self, user: str, system: str | None, params: SamplingParameters, use_adapter: bool
    ) -> AsyncIterator[Delta]:
        """The answer's deltas as the engine produces them; cancelling the caller aborts the request."""
        if use_adapter and not self.has_adapter:
            raise ValueError("this server was started without an adapter")
        if self._engine is None:
            raise RuntimeError("the vLLM engine is not running")
        prompt = {"prompt_token_ids": self.prompt_ids(user, system)}
        if len(prompt["prompt_token_ids"]) + params.max_tokens > self.options.max_model_len:
            raise ValueError(
                f"prompt ({len(prompt['prompt_token_ids'])} tokens) + max_tokens ({params.max_tokens}) exceeds "
                f"the served max_model_len {self.options.max_model_len}"
            )
        request_id = f"req-{next(self._ids)}"
        caller = asyncio.get_running_loop()
        queue: asyncio.Queue[Delta | BaseException | None] = asyncio.Queue()
        engine = self._engine
        lora = self._lora if use_adapter else None
        sampling = self._sampling(params)

        async def produce() -> None:
            try:
                async for output in engine.generate(prompt, sampling, request_id, lora_request=lora):
                    completion = output.outputs[0]
                    delta = Delta(completion.text, tuple(completion.token_ids), completion.finish_reason)
                    caller.call_soon_threadsafe(queue.put_nowait, delta)
                caller.call_soon_threadsafe(queue.put_nowait, None)
            except BaseException as error:  # handed to the caller, who raises it
                caller.call_soon_threadsafe(queue.put_nowait, error)

        task = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        finished = False
        sent: list[str] = []
        ids: list[int] = []
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                sent.append(item.text)
                ids.extend(item.token_ids)
                yield item
            finished = True
            # vLLM's incremental detokenizer holds back a trailing incomplete UTF-8 sequence (an answer cut at
            # max_tokens); send what decoding all the tokens gives, so the text is exactly the tokens' text.
            content = ids[:-1] if ids and ids[-1] in self.stop_token_ids else ids
            whole = self.tokenizer.decode(content, skip_special_tokens=True)
            streamed = "".join(sent)
            if len(whole) > len(streamed) and whole.startswith(streamed):
                yield Delta(whole[len(streamed) :], ())
        finally:
            if not finished:
                task.cancel()
                asyncio.run_coroutine_threadsafe(engine.abort(request_id), self._loop)

    async def generate(
        self, user: str, system: str | None, params: SamplingParameters, use_adapter: bool
    ) -> EngineGeneration:
        """The whole answer, with the counts the metrics need."""
        pieces: list[str] = []
        ids: list[int] = []
        reason: str | None = None
        async for delta in self.stream(user, system, params, use_adapter):
            pieces.append(delta.text)
            ids.extend(delta.token_ids)
            reason = delta.finish_reason or reason
        text = "".join(pieces)
        # vLLM reports the stop token among the ids when it ends the turn; it is not part of the answer.
        content = ids[:-1] if ids and ids[-1] in self.stop_token_ids else ids
        return EngineGeneration(
            text=text,
            token_ids=tuple(content),
            prompt_tokens=len(self.prompt_ids(user, system)),
            num_output_tokens=len(content),
            thinking_tokens=self.thinking_tokens(text),
            finish_reason="length" if reason == "length" else "stop",
        )

    def thinking_tokens(self, text: str) -> int:
        """Tokens of the reasoning block (up to and including `</think>`); 0 when the answer has none."""
        end = text.find(THINK_CLOSE)
        if end < 0:
            return 0
        return len(self.tokenizer(text[: end + len(THINK_CLOSE)], add_special_tokens=False)["input_ids"])
