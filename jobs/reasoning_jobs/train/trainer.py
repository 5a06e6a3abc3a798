"""The training loop: one optimizer step = `global_batch_size` samples in curriculum order, accumulated
over micro batches, loss averaged over the step's completion tokens. The benchmark drives `StepRunner`
directly, so the figures it reports are those of this code."""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reasoning_operator.api import TrainingResult, TrainingStageConfig

from .attention import VARLEN, packed_kernel
from .batching import MicroBatch, step_micro_batches
from .checkpoint import TrainState, latest_checkpoint, load_checkpoint, remove_partial, save_checkpoint
from .modeling import Levers, apply_levers, apply_lora, device_micro_batch, summed_loss
from .options import Resolved, RunOptions, resolve_device, stop_after_step, validate_config
from .preemption import PREEMPTED_EXIT_CODE, StopRequests
from .progress import TENSORBOARD_DIR, ProgressReporter, StepRecord, plot_curve, truncate_metrics

if TYPE_CHECKING:
    from reasoning_jobs.common.mlflow_tracking import MlflowRun

log = logging.getLogger("reasoning.train")

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class StepStats:
    loss: float
    tokens: int
    target_tokens: int
    samples: int
    grad_norm: float


class StepRunner:
    """Runs one optimizer step over a list of micro batches."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        levers: Levers,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.levers = levers
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.params = [p for p in model.parameters() if p.requires_grad]

    def step(self, micro_batches: list[MicroBatch]) -> StepStats:
        self.model.train()
        total_targets = max(1, sum(mb.num_target_tokens for mb in micro_batches))
        loss_sum = torch.zeros((), device=self.device)
        for batch in micro_batches:
            inputs = device_micro_batch(batch, self.device)
            with torch.autocast(
                device_type=self.device.type,
                dtype=self.autocast_dtype or torch.float32,
                enabled=self.autocast_dtype is not None,
            ):
                summed = summed_loss(self.model, inputs, self.levers)
            (summed / total_targets).backward()  # type: ignore[no-untyped-call]
            loss_sum += summed.detach().float()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepStats(
            loss=float(loss_sum.item()) / total_targets,
            tokens=sum(mb.num_tokens for mb in micro_batches),
            target_tokens=total_targets,
            samples=sum(len(mb.seq_lengths) for mb in micro_batches),
            grad_norm=float(grad_norm.item()),
        )


def build_optimizer(model: torch.nn.Module, config: TrainingStageConfig, device: torch.device) -> Any:
    from transformers import get_scheduler

    training = config.training
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params,
        lr=training.learning_rate,
        weight_decay=training.weight_decay,
        fused=device.type == "cuda",
    )
    schedule = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[training.lr_schedule]
    scheduler = get_scheduler(
        schedule,
        optimizer=optimizer,
        num_warmup_steps=math.ceil(training.warmup_ratio * training.max_steps),
        num_training_steps=training.max_steps,
    )
    return optimizer, scheduler


def levers_for(config: TrainingStageConfig, options: RunOptions, resolved: Resolved, model: torch.nn.Module) -> Levers:
    """Resolve 'auto' levers. On CUDA: varlen attention, chunked loss, compiled and tuned layers. With
    spec.training.gradientCheckpointing on, only as much is recomputed as memory needs (GPU memory, or half the
    host's on the CPU), estimated for the model with its trainable parameters in place: nothing, cheap
    elementwise work inside compiled layers, or whole layers (memory.plan_recompute)."""
    from .attention import register_varlen_attention
    from .memory import RecomputePlan, host_memory_bytes, plan_recompute
    from .modeling import decoder_layers

    num_layers = len(decoder_layers(model))
    compile_layers = options.compile if options.compile is not None else resolved.device == "cuda"
    plan = RecomputePlan(options.recompute_layers or 0)
    if options.recompute_layers is None and config.training.gradient_checkpointing:
        training = config.training
        tokens = training.micro_batch_size * training.max_seq_length
        if resolved.device == "cuda":
            total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        else:
            total = host_memory_bytes() // 2  # leave the host room for everything else
        width = 2 if resolved.precision != "fp32" else 4
        dropout = training.method != "lora" or training.lora.dropout > 0
        plan = plan_recompute(model, num_layers, tokens, compile_layers, total, width, dropout)
    attention = register_varlen_attention() if resolved.attention == "varlen" else resolved.attention
    return Levers(
        attention=attention,
        recompute_layers=min(plan.layers, num_layers),
        chunked_loss=options.chunked_loss,
        compile=compile_layers,
        tune_kernels=compile_layers and resolved.device == "cuda",
        activation_budget=plan.activation_budget,
    )


def add_adapters(model: torch.nn.Module, config: TrainingStageConfig) -> torch.nn.Module:
    """LoRA adapters (frozen base) or, for full fine-tuning, the model as it is."""
    model.config.use_cache = False  # type: ignore[union-attr]
    training = config.training
    if training.method == "lora":
        return apply_lora(model, training.lora)
    return model


def prepare_model(
    model: torch.nn.Module, config: TrainingStageConfig, options: RunOptions, resolved: Resolved
) -> tuple[torch.nn.Module, Levers]:
    """Adapters plus the speed levers; the same function the benchmark calls."""
    model = add_adapters(model, config)
    if resolved.fp8:
        from .fp8 import quantize_frozen_projections

        swapped = quantize_frozen_projections(model)
        if resolved.device == "cuda":
            torch.cuda.empty_cache()  # hand the released bf16 weights back before the memory planner looks
        log.info("fp8 base weights: %d frozen projections quantized to e4m3", swapped)
    levers = levers_for(config, options, resolved, model)
    if levers.attention == VARLEN and resolved.device == "cuda":
        log.info("packed rows: varlen attention through the %s kernel", packed_kernel(torch.device("cuda")))
    model.config._attn_implementation = levers.attention  # type: ignore[union-attr]
    apply_levers(model, levers)
    return model, levers


def load_base_model(config: TrainingStageConfig, resolved: Resolved) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    # LoRA keeps the frozen base in the training precision; full fine-tuning keeps fp32 master weights.
    dtype = DTYPES[resolved.precision] if config.training.method == "lora" else torch.float32
    attention = "sdpa" if resolved.attention == "varlen" else resolved.attention
    model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(
        config.model.name, dtype=dtype, attn_implementation=attention
    )
    return model.to(resolved.device)


#: Compiled kernels and their tuning results, kept beside the checkpoints (inductor's own cache format).
COMPILE_CACHE_DIR = "compile-cache"


def keep_compile_cache(output_dir: Path) -> None:
    """Put inductor's on-disk cache on the run's volume, so a pod that resumes after preemption reuses the
    compiled and tuned layers instead of spending the ~4 minutes again (the cache is keyed by torch version,
    GPU and source, so a stale entry is never used). An explicit TORCHINDUCTOR_CACHE_DIR wins; importing torch
    already fills the variable with its per-user temp default, which does not count as explicit."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # a torch without inductor's helper: keep whatever torch does
        return
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if current is None or Path(current).resolve() == Path(default_cache_dir()).resolve():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str((output_dir / COMPILE_CACHE_DIR).resolve())


def open_tracking(config: TrainingStageConfig, output_dir: Path) -> MlflowRun | None:
    """The MLflow run this training logs to: the one a previous pod of it opened (resume), else a new one."""
    from reasoning_jobs.common.mlflow_tracking import RUN_ID_FILE, open_run, run_name

    spec = config.tracking.mlflow if config.tracking is not None else None
    if spec is None:
        return None
    id_file = output_dir / RUN_ID_FILE
    previous = id_file.read_text(encoding="utf-8").strip() if id_file.is_file() else None
    tracker = open_run(spec, run_name(output_dir), previous)
    if tracker is None and previous is not None:
        tracker = open_run(spec, run_name(output_dir))
    if tracker is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(tracker.run_id + "\n", encoding="utf-8")
        if previous is None:
            training = config.training
            tracker.log_params(
                {"model": config.model.name, "method": training.method, "max_steps": training.max_steps,
                 "learning_rate": training.learning_rate, "global_batch_size": training.global_batch_size,
                 "max_seq_length": training.max_seq_length, "precision": training.precision}
            )  # fmt: skip
    return tracker


def run_training(config: TrainingStageConfig, options: RunOptions) -> TrainingResult:
    from transformers import AutoTokenizer

    from reasoning_jobs.common.artifacts import claim_output, training_key, training_upstream
    from reasoning_jobs.common.results import report_result

    from .data import load_samples

    validate_config(config)
    resolved = resolve_device(config, options)
    training = config.training
    output_dir = Path(config.output_dir)
    # Resume only this run's own checkpoints: another config's (a run recreated under the same name, a
    # shared claim) are moved aside first, so training starts at step 0.
    upstream = training_upstream(config)
    claim = claim_output(
        output_dir, "training", training_key(config, upstream), upstream, inputs=(config.data_path, config.model.name)
    )
    keep_compile_cache(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(config.model.name)
    samples = load_samples(config.data_path, tokenizer, training.max_seq_length, progress=options.progress)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    torch.manual_seed(training.seed)
    device = torch.device(resolved.device)
    model, levers = prepare_model(load_base_model(config, resolved), config, options, resolved)
    optimizer, scheduler = build_optimizer(model, config, device)
    autocast = DTYPES[resolved.precision] if resolved.precision != "fp32" else None
    runner = StepRunner(model, optimizer, scheduler, levers, device, autocast)
    log.info(
        "training %s (%s, %s) on %s in %s: %d samples, levers %s",
        config.model.name, training.method, training.backend, resolved.device, resolved.precision, len(samples), levers,
    )  # fmt: skip

    remove_partial(output_dir)
    state = TrainState()
    resume_from = latest_checkpoint(output_dir)
    if resume_from is not None:
        state = load_checkpoint(resume_from, model, optimizer, scheduler)
        log.info("resumed from %s at step %d", resume_from, state.step)
    truncate_metrics(output_dir, state.step)

    tracker = open_tracking(config, output_dir)
    reporter = ProgressReporter(output_dir, training.max_steps, state.step, bar=options.progress, mlflow=tracker)
    stop_at = stop_after_step()
    run_start = time.perf_counter()
    steps_this_run = 0
    with StopRequests() as stop:
        while state.step < training.max_steps:
            batches = step_micro_batches(
                samples, state.step, training.global_batch_size, training.micro_batch_size, training.max_seq_length,
                training.packing, training.shuffle, training.seed, pad_id,
            )  # fmt: skip
            started = time.perf_counter()
            lr = float(scheduler.get_last_lr()[0])
            stats = runner.step(batches)
            seconds = time.perf_counter() - started
            state.step += 1
            state.tokens_seen += stats.tokens
            state.samples_seen += stats.samples
            state.elapsed_seconds += seconds
            state.last_loss = stats.loss
            steps_this_run += 1
            per_step = (time.perf_counter() - run_start) / steps_this_run
            record = StepRecord(
                step=state.step,
                max_steps=training.max_steps,
                loss=stats.loss,
                learning_rate=lr,
                tokens=stats.tokens,
                target_tokens=stats.target_tokens,
                samples=stats.samples,
                step_seconds=seconds,
                tokens_per_second=stats.tokens / max(seconds, 1e-9),
                eta_seconds=(training.max_steps - state.step) * per_step,
                grad_norm=stats.grad_norm,
                elapsed_seconds=state.elapsed_seconds,
            )
            reporter.log(record)
            finished = state.step >= training.max_steps
            if not finished and (stop.requested or state.step % training.checkpoint_interval == 0):
                save_checkpoint(output_dir, state, model, optimizer, scheduler, keep=options.keep_checkpoints)
            if stop_at is not None and state.step >= stop_at:
                os._exit(3)  # simulated preemption: no cleanup, no final save
            if stop.requested and not finished:
                reporter.close()
                log.warning("SIGTERM: stopped after step %d with its checkpoint saved", state.step)
                raise SystemExit(PREEMPTED_EXIT_CODE)
    reporter.close()

    adapter_path = save_final(model, tokenizer, config, output_dir)
    plot_curve(output_dir)
    if tracker is not None:
        tracker.finish()
    result = TrainingResult(
        steps=state.step,
        final_loss=state.last_loss,
        tokens_seen=state.tokens_seen,
        wall_seconds=round(state.elapsed_seconds, 3),
        tokens_per_second=round(state.tokens_seen / max(state.elapsed_seconds, 1e-9), 1),
        adapter_path=str(adapter_path),
        backend=training.backend,
        tensorboard_dir=str(output_dir / TENSORBOARD_DIR),
        mlflow_run_url=tracker.url if tracker is not None else None,
        mlflow_run_id=tracker.run_id if tracker is not None else None,
        inputs_key=claim.key,
        stale_artifacts=claim.moved_to,
    )
    report_result(result, output_dir)
    return result


def merge_adapter(model: torch.nn.Module, config: TrainingStageConfig, adapter_dir: Path) -> Any:
    """Base + adapter as one model. Where the in-memory base was quantized (FP8 base weights), the merge
    starts again from the original checkpoint (on the CPU) to keep the merged weights exact."""
    from .fp8 import Fp8FrozenLinear

    if not any(isinstance(module, Fp8FrozenLinear) for module in model.modules()):
        return model.merge_and_unload()  # type: ignore[operator]
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(config.model.name, dtype=DTYPES[config.training.precision])
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()


def save_final(model: torch.nn.Module, tokenizer: Any, config: TrainingStageConfig, output_dir: Path) -> Path:
    """LoRA: PEFT adapter in `adapter/` (+ merged weights in `merged/` if asked); full: `model/`."""
    if config.training.method == "lora":
        target = output_dir / "adapter"
        model.save_pretrained(target)  # type: ignore[operator]
        tokenizer.save_pretrained(target)
        if config.training.merge_weights:
            merged = merge_adapter(model, config, target)
            merged.save_pretrained(output_dir / "merged")
            tokenizer.save_pretrained(output_dir / "merged")
        return target
    target = output_dir / "model"
    model.save_pretrained(target)  # type: ignore[operator]
    tokenizer.save_pretrained(target)
    return target
