"""The curation job: plan blocks, run the NeMo Curator pipeline on Ray, then apply quotas and the global
curriculum and write training.jsonl + summary.json."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from loguru import logger

from reasoning_jobs.common.artifacts import Claim, claim_output, curation_key
from reasoning_jobs.common.results import report_result
from reasoning_operator.api import CURATION_EXECUTION_FIELDS, CurationResult, CurationStageConfig

from . import records as rules
from .progress import BlockProgress
from .sources import Block, plan_blocks, select_files
from .tokenization import WorkerTokenizer

#: malformed lines named in summary.json (all are counted); kept short for the 4 KiB termination message
MAX_REPORTED_ERRORS = 5
MAX_ERROR_CHARS = 200
#: Ray workers' environment. Single-threaded native libraries: one worker = one core. RAY_LD_PRELOAD_ON_WORKERS
#: is Ray's switch to keep, in its workers, the allocator it preloads into its own processes (raylet, GCS; Ray's
#: jemalloc, or `RAY_JEMALLOC_LIB_PATH`, see `allocator_env`): the tokenizer's Rust code is allocation-bound
#: (same results; Ray strips LD_PRELOAD from workers by default).
WORKER_ENV = {
    "RAYON_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
    "RAY_LD_PRELOAD_ON_WORKERS": "1",
}


class CurationError(RuntimeError):
    """The job cannot produce a training set; the message says why."""


def _check_config(config: CurationStageConfig) -> None:
    """What the stage model cannot know: the record schema's removable columns."""
    removable = set(rules.PASSTHROUGH_FIELDS) | {"reasoning", "category", "used_in_training"}
    unknown = sorted(set(config.curation.remove_columns) - removable)
    if unknown:
        raise CurationError(f"--remove-columns: cannot remove {unknown}; removable columns are {sorted(removable)}")


def _build_pipeline(
    config: CurationStageConfig,
    blocks: list[Block],
    model_path: str,
    eot: tuple[str, str],
    worker_tokenizer: WorkerTokenizer | None = None,
) -> Any:
    from nemo_curator.pipeline import Pipeline

    from .stages import (
        BlockPartitionStage,
        BoxedAnswerFilter,
        ChatTemplateStage,
        LanguageFilter,
        ReadBlockStage,
        ShardWriterStage,
        StageChain,
        ThinkTagFilter,
        UsedInTrainingFilter,
    )

    out = Path(config.output_dir)
    return Pipeline(
        name="reasoning-curation",
        description="Llama-Nemotron post-training data -> reasoning SFT set",
        stages=[
            BlockPartitionStage(blocks=blocks),
            StageChain(
                steps=(
                    ReadBlockStage(),
                    UsedInTrainingFilter(model=config.keeps_used_in_training()),
                    ThinkTagFilter(),
                    BoxedAnswerFilter(),
                    LanguageFilter(
                        model_path=model_path,
                        lang=config.curation.language,
                        min_score=config.curation.language_threshold,
                    ),
                    ChatTemplateStage(
                        tokenizer=worker_tokenizer or WorkerTokenizer(name=config.tokenizer),
                        completion_prefix=eot[0],
                        completion_suffix=eot[1],
                        max_prompt_tokens=config.curation.max_token_count,
                        max_completion_tokens=config.curation.max_completion_token_count,
                    ),
                    ShardWriterStage(
                        shard_dir=str(out / "shards"),
                        keys_dir=str(out / ".keys"),
                        curriculum=config.curation.curriculum,
                        remove_columns=tuple(config.curation.remove_columns),
                    ),
                )
            ),
        ],
    )


def mimalloc_library() -> Path | None:
    """mimalloc's shared library from the `cmeel-mimalloc` wheel (the `curate` extra on Linux), or None."""
    try:
        files = importlib.metadata.distribution("cmeel-mimalloc").files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in sorted(files, key=lambda f: len(f.name)):  # libmimalloc.so before libmimalloc.so.3.4
        if file.name.startswith("libmimalloc.so"):
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    return None


def allocator_env() -> dict[str, str]:
    """The allocator Ray preloads into its processes, workers included (`RAY_JEMALLOC_LIB_PATH` names the
    library, whichever it is): mimalloc where installed, else Ray's own jemalloc.

    Token counting is allocation-bound. Counting 80k completions on one core (bench/curate/README.md) takes
    5.6 s on glibc malloc, 4.3-4.5 s on jemalloc and 3.4-3.6 s on mimalloc, with identical counts. A
    `RAY_JEMALLOC_LIB_PATH` set by the user wins; a process started with LD_PRELOAD already set keeps its own (Ray
    only preloads where LD_PRELOAD is unset).
    """
    if "RAY_JEMALLOC_LIB_PATH" in os.environ:  # the operator of the machine chose
        return {"RAY_JEMALLOC_LIB_PATH": os.environ["RAY_JEMALLOC_LIB_PATH"]}
    library = mimalloc_library()
    if library is None or not preloadable(library):
        return {}
    return {"RAY_JEMALLOC_LIB_PATH": str(library)}


def preloadable(library: Path) -> bool:
    """Whether a process starts with ``library`` in LD_PRELOAD. A preload whose own dependencies are missing
    (the curation image once lacked libatomic.so.1, which mimalloc needs) stops every process Ray starts, so
    Ray's GCS server never comes up and ray.init times out; this costs one interpreter start (~50 ms)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", ""],
        env={**os.environ, "LD_PRELOAD": str(library)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0 or b"ld.so" in proc.stderr:
        logger.warning(f"not preloading {library}: {proc.stderr.decode(errors='replace').strip()}")
        return False
    return True


def ray_address(on_cluster: bool) -> str:
    """Where ray.init connects. With spec.curation.cluster the job runs as a KubeRay RayJob's driver: Ray's job
    supervisor sets RAY_ADDRESS to that cluster ("auto" finds the local raylet of the head otherwise). Without
    it, a private local cluster, never one another process on this machine started (RAY_ADDRESS is ignored)."""
    if not on_cluster:
        return "local"
    return os.environ.get("RAY_ADDRESS") or "auto"


def _start_ray(n_workers: int, on_cluster: bool = False) -> None:
    """A private local Ray cluster of `n_workers` CPUs whose workers run single-threaded native libraries; on a
    KubeRay cluster (`on_cluster`), a connection to it, sized by its workers' own CPUs.

    Curator's executor calls ray.init(ignore_reinit_error=True): starting Ray here first sizes the cluster. The
    environment reaches the workers through the processes Ray starts (workers inherit the raylet's, which
    inherits ours), not a runtime_env: a runtime_env makes Ray start fresh workers through its runtime-env agent
    and leaves the workers it prestarted at init unused (~1.3 s a run here).
    """
    import ray

    if ray.is_initialized():
        return
    env = {**WORKER_ENV, **allocator_env()}
    logger.info(f"Ray workers preload {env.get('RAY_JEMALLOC_LIB_PATH', 'Ray’s own jemalloc')}")
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        if on_cluster:
            # The cluster exists already (its size is the RayJob's worker group). WORKER_ENV reaches its workers
            # through the job's runtime_env, the only way into processes another raylet started; the allocator
            # preload does not (it is a raylet setting: the pods' own environment would have to carry it).
            ray.init(address=ray_address(True), runtime_env={"env_vars": dict(WORKER_ENV)}, log_to_driver=False)
        else:
            _init_local_ray(n_workers)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


#: How many times a private local Ray is started before curation gives up, and how long each start lets the raylet
#: take to register with the GCS (see _init_local_ray).
RAY_START_ATTEMPTS = 5
RAYLET_REGISTRATION_SECONDS = 180.0


def _init_local_ray(n_workers: int) -> None:
    """Start the private local Ray, patiently. Ray gives its raylet a fixed 30 s to register with the GCS
    (`raylet_start_wait_time_s`, a local variable in ray/_private/node.py), which an overloaded node misses: seen
    on a 2-core machine running image and Go builds beside three test workers (load 20), three starts in a row.
    So the registration check waits up to RAYLET_REGISTRATION_SECONDS (`_patient_registration`), and a start
    that still times out is tried again as a fresh session: the processes the failed one started (GCS, raylet,
    agents, reaper: nothing else of this process runs yet) are killed first, since Ray forgets them when its
    start raises."""
    import ray

    for attempt in range(1, RAY_START_ATTEMPTS + 1):
        try:
            with _patient_registration():
                ray.init(address=ray_address(False), num_cpus=n_workers, include_dashboard=False, log_to_driver=False)
            return
        except Exception as error:
            if "timed out during startup" not in str(error) or attempt == RAY_START_ATTEMPTS:
                raise
            logger.warning(f"Ray did not start (attempt {attempt}/{RAY_START_ATTEMPTS}): {error}; trying again")
            ray.shutdown()
            _kill_descendants()


@contextlib.contextmanager
def _patient_registration() -> Iterator[None]:
    """While Ray starts: its node-registration lookup (`ray._private.services.get_node`, which raises
    RuntimeError until the raylet has registered) keeps asking for up to RAYLET_REGISTRATION_SECONDS before it
    raises, so Ray's own 30 s loop around it sees a registered node instead of giving up. A Ray without that
    function starts unchanged."""
    from ray._private import services

    original = getattr(services, "get_node", None)
    if original is None:
        yield
        return

    def patient(*args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + RAYLET_REGISTRATION_SECONDS
        while True:
            try:
                return original(*args, **kwargs)
            except RuntimeError:
                # A raylet that crashed will never register (under load it can fail a check on a GCS reply).
                if time.monotonic() > deadline or _raylet_died():
                    raise
                time.sleep(0.5)

    services.get_node = patient
    try:
        yield
    finally:
        services.get_node = original


def _descendants() -> dict[int, tuple[str, str]]:
    """Every process below this one: pid -> (command name, state), from Linux /proc (elsewhere: none)."""
    stats: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            stat = entry.read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        state, ppid = rest.split()[:2]
        stats[int(entry.parent.name)] = (int(ppid), name, state)
    below: dict[int, tuple[str, str]] = {}
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, (ppid, _, _) in stats.items() if ppid in frontier and pid not in below}
        below.update({pid: stats[pid][1:] for pid in frontier})
    return below


def _raylet_died() -> bool:
    return any(name == "raylet" and state in ("Z", "X") for name, state in _descendants().values())


def _kill_descendants() -> None:
    """SIGKILL every process below this one."""
    for pid in _descendants():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _stop_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def _load_tokenizer_and_stages(name: str) -> Any:
    """The tokenizer, with the pipeline's modules imported on the way (NeMo Curator's pipeline and stages, pandas:
    ~1.5 s), in the thread that runs while Ray starts."""
    import nemo_curator.pipeline  # noqa: F401

    from . import stages  # noqa: F401
    from .tokenization import load_tokenizer

    return load_tokenizer(name)


def _warm_workers(config: CurationStageConfig, worker_tokenizer: WorkerTokenizer, model_path: str) -> list[Any]:
    """Start every worker's one-time work (imports, tokenizer tools, fastText model: ~1.5-2 s a worker) as soon as
    the tokenizer is known, so that it runs while the driver plans the pipeline and NeMo Curator sets its stages up,
    not in each worker's first block. Ray runs the pipeline's tasks in the same worker processes (same job and
    environment), which keep what was loaded. Returns the tasks (their values: the workers' pids)."""
    import ray

    from .stages import warm_worker

    warm = ray.remote(num_cpus=1)(warm_worker)
    args = (worker_tokenizer, model_path, config.curation.language_threshold, config.curation.language)
    return [warm.remote(*args) for _ in range(config.curation.workers)]


def executor(on_cluster: bool) -> Any:
    """Curator's Ray Data executor. On a KubeRay cluster it skips the head: the head has no CPUs (``num-cpus 0``:
    it holds the GCS, the dashboard and the driver), and Curator pins each stage's ``setup_on_node`` to every
    alive node with a CPU request, which on the head can never be scheduled (TaskUnschedulableError, seen on
    the real node)."""
    from nemo_curator.backends.ray_data import RayDataExecutor

    return RayDataExecutor(ignore_head_node=on_cluster)


def _run_on_ray(pipeline: Any, on_cluster: bool) -> list[Any]:
    """Run the pipeline on Curator's Ray Data executor, without Ray Data's per-operator resource reservation.

    The reservation splits the cluster's CPUs between the plan's operators (block partitioning, the repartition
    and the stage chain) before any has run, so the stage chain started one task, and a second worker only once
    the first task had finished; later tasks waited ~0.2 s each for their budget. The job has one heavy operator
    and its blocks return file names and counts (KiBs), so there is nothing to reserve for. Measured on the 2-vCPU
    VM, 2 workers, 210k samples (task start and end times): workers busy 80 % of the span from the first task's
    start to the last one's end with the reservation, 94 % without it.
    """
    from nemo_curator.backends.ray_data import executor as ray_data_executor
    from ray.data import DataContext

    DataContext.get_current().op_resource_reservation_enabled = False
    curators_setup = ray_data_executor.execute_setup_on_node
    ray_data_executor.execute_setup_on_node = _node_setup
    try:
        tasks: list[Any] = pipeline.run(executor(on_cluster))
    finally:
        ray_data_executor.execute_setup_on_node = curators_setup
        _stop_ray()
    return tasks


def _node_setup(stages: list[Any], ignore_head_node: bool = False) -> None:
    """Curator's per-node setup for the stages that have one, and none for those that do not.

    Curator pins one setup task per stage to every node alive as the pipeline starts (node affinity, not soft)
    and waits for them all, so a worker lost in that window failed the whole job even where no stage sets
    anything up on a node: KubeRay then retried it on a new cluster (seen on the real node, a worker killed as
    the driver planned). Losing a worker once the blocks run is Ray's to absorb: it retries them elsewhere.
    This job's stages keep ``setup_on_node`` as the base's no-op, so they ask for no task at all."""
    from nemo_curator.backends.utils import execute_setup_on_node
    from nemo_curator.stages.base import ProcessingStage

    needed = [s for s in stages if type(s).setup_on_node is not ProcessingStage.setup_on_node]
    if needed:
        execute_setup_on_node(needed, ignore_head_node=ignore_head_node)


def _line_errors(metas: list[dict[str, Any]]) -> list[str]:
    """'file:line: message' for the first malformed lines (line numbers are 1-based over the whole file)."""
    by_file: dict[int, list[dict[str, Any]]] = {}
    for meta in metas:
        by_file.setdefault(meta["block"]["file_index"], []).append(meta)
    messages: list[str] = []
    for file_index in sorted(by_file):
        first_line = 0
        for meta in sorted(by_file[file_index], key=lambda m: m["block"]["block_index"]):
            for line_in_block, message in meta["errors"]:
                text = f"{meta['block']['relative']}:{first_line + line_in_block + 1}: {message}"
                messages.append(text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…")
            first_line += meta["lines"]
    return messages


def _token_counter(metas: list[dict[str, Any]]) -> str | None:
    """Which library counted the blocks' tokens ('fastokens+tokenizers' where a spot check fell back), logged
    with the spot checks and every difference they found."""
    counters = [m["token_counter"] for m in metas if "token_counter" in m]
    if not counters:
        return None
    names = Counter(str(c["name"]) for c in counters)
    checked = sum(int(c["checked"]) for c in counters)
    mismatched = sum(int(c["mismatched"]) for c in counters)
    logger.info(f"blocks by token counter: {json.dumps(dict(names))}; {checked} counts spot-checked")
    if mismatched:
        logger.warning(
            f"{mismatched} of {checked} spot-checked token counts differed between fastokens and tokenizers: "
            "those blocks were counted again by tokenizers, and their workers counted with tokenizers from then on"
        )
    return "+".join(sorted(names))


def curate(config: CurationStageConfig) -> CurationResult:
    """Run the whole job and report its result (summary.json + termination message)."""
    from .language import bundled_lid_model_path
    from .tokenization import end_of_turn

    started = time.monotonic()
    _check_config(config)
    model_path = config.language_model_path or str(bundled_lid_model_path())
    if not Path(model_path).is_file():
        raise CurationError(f"language-ID model {model_path} does not exist")
    try:
        files = select_files(config.dataset.source, list(config.dataset.filename_filters))
    except ValueError as error:
        raise CurationError(str(error)) from None
    claim = _claim_output(config)
    # The tokenizer loads (imports transformers: ~1 s) and the pipeline's modules import (~1.5 s) in a thread while
    # Ray starts (~5 s, mostly waiting on its processes). A tokenizer error stops the cluster again.
    import ray  # before the thread's imports, which import it too (Ray's modules import each other)

    with ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(_load_tokenizer_and_stages, config.tokenizer)
        try:
            _start_ray(config.curation.workers, on_cluster=config.curation.cluster is not None)
        finally:
            failure = loading.exception()
        if failure is not None:
            _stop_ray()
            if isinstance(failure, ValueError):
                raise CurationError(str(failure)) from None
            raise failure
        tokenizer = loading.result()
    try:
        eot = end_of_turn(tokenizer)
        worker_tokenizer = WorkerTokenizer.from_tokenizer(tokenizer, config.tokenizer, config.curation.token_counter)
        warming = _warm_workers(config, worker_tokenizer, model_path)
        logger.info(f"token counts: {worker_tokenizer.counter_choice()}")
        blocks = plan_blocks(files, config.block_size)
        logger.info(f"curating {len(files)} files ({sum(f.size for f in files) / 1e6:.1f} MB) in {len(blocks)} blocks")
        out = Path(config.output_dir)
        for stale in (out / "shards", out / ".keys"):
            shutil.rmtree(stale, ignore_errors=True)
            stale.mkdir(parents=True)
        pipeline = _build_pipeline(config, blocks, model_path, eot, worker_tokenizer)
        # The pipeline's first tasks need the CPUs the warm-up holds anyway; waiting here surfaces its errors.
        warmed = set(ray.get(warming))
    except BaseException:
        _stop_ray()
        raise
    prepared = time.monotonic()
    # NeMo Curator's executor shuts Ray down when the pipeline ends
    with BlockProgress(out / ".keys", len(blocks)):
        tasks = _run_on_ray(pipeline, config.curation.cluster is not None)
    in_warmed = sum(task._metadata["curate"].get("pid") in warmed for task in tasks)
    logger.info(f"{in_warmed} of {len(tasks)} blocks ran in the {len(warmed)} warmed worker processes")
    return _merge(config, blocks, tasks, (started, prepared, time.monotonic()), claim)


def _claim_output(config: CurationStageConfig) -> Claim:
    """Stamp the output directory with these settings' key; another experiment's data there is moved aside."""
    # what decides the data: not where it is written, how it runs (workers, resources, a Ray cluster) or the
    # credentials' Secret
    settings = config.model_dump(
        mode="json",
        exclude={"output_dir": True, "curation": set(CURATION_EXECUTION_FIELDS), "dataset": {"credentials_secret"}},
    )
    key = curation_key(settings, str(config.dataset.source))
    return claim_output(Path(config.output_dir), "curation", key, inputs=(str(config.dataset.source),))


def _merge(
    config: CurationStageConfig,
    blocks: list[Block],
    tasks: list[Any],
    times: tuple[float, float, float],
    claim: Claim,
) -> CurationResult:
    """Counts from every block's metadata, quotas, the global curriculum merge into training.jsonl, and the
    result (summary.json + termination message)."""
    from .curriculum import Shard, percentiles, select, write_training_file

    started, prepared, ran = times
    out = Path(config.output_dir)
    metas = [task._metadata["curate"] for task in tasks]
    stage_seconds: dict[str, float] = {}
    for task in tasks:
        for perf in task._stage_perf:
            stage_seconds[perf.stage_name] = stage_seconds.get(perf.stage_name, 0.0) + perf.process_time
        for step, seconds in task._metadata["curate"].get("seconds", {}).items():  # the steps of the chain
            stage_seconds[step] = stage_seconds.get(step, 0.0) + seconds
    logger.info(
        "stage seconds (summed over workers): " + json.dumps({k: round(v, 2) for k, v in stage_seconds.items()})
    )
    allocators = Counter(str(m.get("allocator")) for m in metas)
    logger.info("blocks by worker allocator: " + json.dumps(dict(allocators)))
    token_counter = _token_counter(metas)
    if len(metas) != len(blocks):
        raise CurationError(f"pipeline returned {len(metas)} of {len(blocks)} blocks")
    metas.sort(key=lambda m: (m["block"]["file_index"], m["block"]["block_index"]))

    read = sum(m["read"] for m in metas)
    malformed = sum(m["malformed"] for m in metas)
    dropped = dict.fromkeys(rules.RULES, 0)
    for meta in metas:
        for rule, count in meta["dropped"].items():
            dropped[rule] = dropped.get(rule, 0) + count
    errors = _line_errors(metas)
    result = CurationResult(
        samples_read=read,
        samples_written=0,
        dropped=dropped,
        malformed_lines=malformed,
        errors=errors[:MAX_REPORTED_ERRORS],
        token_counter=token_counter,
        blocks=len(blocks),
        inputs_key=claim.key,
        stale_artifacts=claim.moved_to,
    )
    error_rate = malformed / read if read else 0.0
    if error_rate > config.curation.max_error_rate:
        shutil.rmtree(out / ".keys", ignore_errors=True)
        report_result(result, out)
        shown = "; ".join(errors[:3])
        raise CurationError(
            f"{malformed} of {read} lines are malformed ({error_rate:.2%} > max error rate "
            f"{config.curation.max_error_rate:.2%}): {shown}"
        )
    for message in errors[:MAX_REPORTED_ERRORS]:
        logger.warning(f"skipped malformed line {message}")

    shards = [
        Shard(order=i, path=Path(m["shard"]), keys_path=Path(m["keys"]), rows=m["written"]) for i, m in enumerate(metas)
    ]
    masks, quota_dropped = select(shards, config.curation.category_caps, config.curation.on_off_ratio)
    for rule, count in quota_dropped.items():
        dropped[rule] += count
    written = int(sum(int(mask.sum()) for mask in masks))
    target = out / "training.jsonl"
    tokens = write_training_file(shards, masks, target, config.curation.curriculum, written)
    on = int(sum(int((shard.keys()["on"] & mask).sum()) for shard, mask in zip(shards, masks, strict=True)))
    shutil.rmtree(out / ".keys", ignore_errors=True)

    result = result.model_copy(
        update={
            "samples_written": written,
            "dropped": dropped,
            "reasoning_on": on,
            "reasoning_off": written - on,
            "output_path": str(target),
            "token_percentiles": {
                "prompt": percentiles(tokens["prompt"]),
                "completion": percentiles(tokens["completion"]),
            },
        }
    )
    if read != written + sum(dropped.values()) + malformed:
        raise CurationError(f"counts do not add up: {result.to_wire()}")
    report_result(result, out)
    finished = time.monotonic()
    elapsed = finished - started
    logger.info(f"curated {written}/{read} samples in {elapsed:.1f}s ({read / max(elapsed, 1e-9):.0f} samples/s)")
    phases = {"prepare": prepared - started, "pipeline": ran - prepared, "merge": finished - ran}
    logger.info("phase seconds: " + json.dumps({name: round(seconds, 2) for name, seconds in phases.items()}))
    return result
