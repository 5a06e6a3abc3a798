"""`ReasoningRun.spec`: one section per stage, defaults from NVIDIA's single-GPU reasoning recipe.

The CRD schema, the CEL rules and every job's config are generated from these classes; there is no
hand-written YAML schema anywhere.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from .base import ApiModel, Rule, check_rules, section_config
from .cache import CacheSpec
from .export import ExportSpec
from .tracking import TrackingSpec
from .validation import (
    MAX_ITEMS,
    MAX_TEXT,
    ConfigKey,
    Item,
    LabelValue,
    PositiveQuantity,
    SubdomainName,
    Text,
    UniqueList,
)

#: 2^32 - 1: seeds go to numpy, which takes 32-bit seeds.
MAX_SEED = 4_294_967_295
#: Bounds on step and sample counts: far above any real run, far below what overflows a job's arithmetic.
MAX_COUNT = 100_000_000

DEFAULT_GPU_PRODUCTS = [
    "NVIDIA-H100-80GB-HBM3",
    "NVIDIA-H100-NVL",
    "NVIDIA-H100-PCIe",
    "NVIDIA-A100-SXM4-80GB",
    "NVIDIA-A100-80GB-PCIe",
    "NVIDIA-A100-SXM4-40GB",
    "NVIDIA-A100-PCIE-40GB",
]
#: The label Kueue reads a Job's (and here a run's) LocalQueue from.
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DATASET_SOURCE_PATTERN = r"^(hf://[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|s3://\S+|gs://\S+|/\S*)$"


class Resources(ApiModel):
    """Container requests (limits equal requests, so a run is Guaranteed QoS where it matters)."""

    cpu: PositiveQuantity = "4"
    memory: PositiveQuantity = "32Gi"


class SecretKeyRef(ApiModel):
    name: SubdomainName = Field(description="Secret in the run's namespace.")
    key: ConfigKey = Field(default="token", description="Key holding the hub token.")


class DatasetSpec(ApiModel):
    """Where the Llama-Nemotron Post-Training Dataset (or one in its schema) lives, and which part to use."""

    model_config = section_config("spec.dataset", immutable=True)

    source: str = Field(
        default="hf://nvidia/Llama-Nemotron-Post-Training-Dataset",
        max_length=MAX_TEXT,
        pattern=DATASET_SOURCE_PATTERN,
        description=(
            "hf://ORG/NAME (Hugging Face dataset id), s3://… or gs://… (object store), "
            "or an absolute path on the run's volume laid out as SFT/<category>/<name>.jsonl."
        ),
    )
    filename_filters: UniqueList[Item] = Field(
        default_factory=lambda: ["math_v1.1", "chat"],
        min_length=1,
        max_length=MAX_ITEMS,
        description="Substrings of file names to select (math_v1.1 does not select math_v1.jsonl).",
    )
    used_in_training: str | None = Field(
        default="Nano",
        min_length=1,
        max_length=253,
        description="Keep samples whose used_in_training lists this model; null keeps all.",
    )
    credentials_secret: SubdomainName | None = Field(
        default=None,
        description=(
            "Secret in the run's namespace whose keys become the curation pod's environment, for s3:// and gs:// "
            "sources: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL (S3-compatible stores), "
            "GOOGLE_APPLICATION_CREDENTIALS, …"
        ),
    )


#: who counts tokens in curation: fastokens where it counts like tokenizers (auto), or tokenizers alone
TokenCounter = Literal["auto", "tokenizers"]


class CurationCluster(ApiModel):
    """A Ray cluster for the curation stage, run by KubeRay as a RayJob: a head (the driver runs there) and one
    group of identical workers that run the pipeline's blocks."""

    workers: int = Field(default=2, ge=1, le=256, description="Ray worker pods (one worker group).")
    worker_resources: Resources = Field(
        default_factory=lambda: Resources(cpu="8", memory="32Gi"), description="Each worker pod's requests/limits."
    )
    head_resources: Resources = Field(
        default_factory=lambda: Resources(cpu="2", memory="8Gi"),
        description="The head pod (GCS, dashboard, the driver); it runs no blocks (num-cpus 0).",
    )


#: spec.curation's fields that say how curation runs, not what it makes: left out of its input keys (the
#: job's stamp and the stage cache's key), so one output serves any of them. The output is byte-identical
#: across them: one or more workers in a pod, or a KubeRay cluster (tests/node/test_ray_curation_on_node.py,
#: bench/curate/bench_cluster.py).
CURATION_EXECUTION_FIELDS = frozenset({"workers", "resources", "cluster"})


class CurationSpec(ApiModel):
    model_config = section_config("spec.curation", immutable=True)

    language: str = Field(
        default="en", max_length=3, pattern=r"^[a-z]{2,3}$", description="fastText lid.176 language code."
    )
    language_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Minimum language-ID score.")
    tokenizer: Text | None = Field(default=None, description="Hub id or path; defaults to spec.model.name.")
    max_token_count: int = Field(default=8192, ge=16, le=1_048_576, description="Max prompt tokens after templating.")
    max_completion_token_count: int = Field(default=16384, ge=16, le=1_048_576, description="Max completion tokens.")
    token_counter: TokenCounter = Field(
        default="auto",
        description=(
            "auto: fastokens counts tokens where it loads the tokenizer and counts its probes like tokenizers (every "
            "block spot-checked; any difference falls back to tokenizers); tokenizers: Hugging Face tokenizers only."
        ),
    )
    curriculum: bool = Field(default=True, description="Order by completion length, on/off interleaved.")
    workers: int = Field(default=8, ge=1, le=512, description="NeMo Curator workers (CPU cores).")
    remove_columns: UniqueList[Item] = Field(
        default_factory=list, max_length=MAX_ITEMS, description="Columns to drop from the output."
    )
    category_caps: dict[
        Annotated[str, Field(max_length=63, pattern=r"^[-._a-zA-Z0-9]+$")], Annotated[int, Field(ge=0, le=MAX_COUNT)]
    ] = Field(default_factory=dict, max_length=MAX_ITEMS, description="Optional per-category sample caps.")
    on_off_ratio: float | None = Field(
        default=None, gt=0.0, le=100.0, description="Optional target ratio of reasoning-on to reasoning-off samples."
    )
    max_error_rate: float = Field(
        default=0.001, ge=0.0, le=1.0, description="Fail when malformed lines exceed this fraction."
    )
    resources: Resources = Field(default_factory=lambda: Resources(cpu="8", memory="32Gi"))
    cluster: CurationCluster | None = Field(
        default=None,
        description="Run curation on a Ray cluster that KubeRay runs (a RayJob) instead of one pod; needs KubeRay.",
    )


class ModelSpec(ApiModel):
    model_config = section_config("spec.model", immutable=True)

    name: str = Field(
        default="meta-llama/Llama-3.1-8B-Instruct",
        min_length=1,
        max_length=MAX_TEXT,
        description="Hugging Face id or an absolute path on the run's volume.",
    )
    hub_token_secret: SecretKeyRef | None = Field(default=None, description="Hub token for gated models/datasets.")


class LoraSpec(ApiModel):
    rank: int = Field(default=64, ge=1, le=1024)
    alpha: int = Field(default=128, ge=1, le=4096)
    dropout: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="Dropout on each adapter's input. 0 as in the reference recipe (NeMo's LoRA default); "
        "any other value keeps a dropped copy of every adapter's input for backward (18 GB more for the 8B "
        "model at 8k tokens per micro batch, bench/train/README.md).",
    )
    target_modules: UniqueList[Item] = Field(
        default_factory=lambda: list(LORA_TARGETS), min_length=1, max_length=MAX_ITEMS
    )


_TRAINING_RULES = [
    Rule(
        "self.globalBatchSize % self.microBatchSize == 0",
        lambda t: t.global_batch_size % t.micro_batch_size == 0,
        "spec.training.globalBatchSize must be a multiple of spec.training.microBatchSize",
        ".globalBatchSize",
    ),
    Rule(
        "self.checkpointInterval <= self.maxSteps",
        lambda t: t.checkpoint_interval <= t.max_steps,
        "spec.training.checkpointInterval must not exceed spec.training.maxSteps",
        ".checkpointInterval",
    ),
    Rule(
        "!self.fp8BaseWeights || self.method == 'lora'",
        lambda t: not t.fp8_base_weights or t.method == "lora",
        "spec.training.fp8BaseWeights needs method lora (full fine-tuning trains the base weights)",
        ".fp8BaseWeights",
    ),
]


class TrainingSpec(ApiModel):
    model_config = section_config("spec.training", immutable=True, rules=_TRAINING_RULES)

    backend: Literal["transformers"] = Field(
        default="transformers",
        description="Training library: transformers + PEFT (NeMo AutoModel cannot be installed beside it: README).",
    )
    method: Literal["lora", "full"] = "lora"
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA settings; ignored when method is full.")
    learning_rate: float = Field(default=1e-4, gt=0.0, le=1.0)
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = Field(default=0.05, ge=0.0, le=1.0)
    weight_decay: float = Field(default=0.001, ge=0.0, le=1.0)
    global_batch_size: int = Field(default=256, ge=1, le=65536)
    micro_batch_size: int = Field(default=1, ge=1, le=4096)
    max_steps: int = Field(default=2000, ge=1, le=10_000_000)
    max_seq_length: int = Field(default=16384, ge=32, le=1_048_576)
    packing: bool = Field(default=True, description="Pack samples (order-preserving) up to maxSeqLength.")
    shuffle: bool = Field(default=False, description="Curriculum order is kept unless true.")
    precision: Literal["bf16", "fp16", "fp32"] = "bf16"
    gradient_checkpointing: bool = Field(
        default=True,
        description=(
            "Recompute activations in the backward pass only as far as GPU memory needs: nothing where they fit; "
            "else cheap elementwise work inside compiled layers; else whole decoder layers too. "
            "false: never recompute (may run out of memory)."
        ),
    )
    fp8_base_weights: bool = Field(
        default=False,
        description=(
            "LoRA: run the frozen base weights' matmuls in FP8 (e4m3, per-row scales) on GPUs with FP8 tensor "
            "cores (Ada, Hopper). Faster and half the weight memory; slightly different numerics."
        ),
    )
    checkpoint_interval: int = Field(
        default=100, ge=1, le=10_000_000, description="Steps between resumable checkpoints."
    )
    seed: int = Field(default=42, ge=0, le=MAX_SEED)
    merge_weights: bool = Field(default=False, description="Also save merged base+adapter weights.")
    accepted_gpu_products: UniqueList[LabelValue] = Field(
        default_factory=lambda: list(DEFAULT_GPU_PRODUCTS),
        min_length=1,
        max_length=MAX_ITEMS,
        description="Values of the node label nvidia.com/gpu.product the training pod may run on.",
    )
    resources: Resources = Field(default_factory=lambda: Resources(cpu="8", memory="64Gi"))

    @model_validator(mode="after")
    def _cross_field(self) -> TrainingSpec:
        check_rules(self, _TRAINING_RULES)
        return self

    backoff_limit: int = Field(default=3, ge=0, le=100, description="Pod retries; each resumes from a checkpoint.")


ServingBackend = Literal["vllm", "pytriton"]


class ServingSpec(ApiModel):
    backend: ServingBackend = Field(
        default="vllm",
        description="vllm: a vLLM engine inside Triton (GPU; gpus 0 runs vLLM's CPU build), base + LoRA adapter "
        "only; pytriton: transformers inside Triton (CPU/dev), also serves fully fine-tuned weights.",
    )
    replicas: int = Field(default=1, ge=0, le=64)
    keep_serving: bool = Field(default=False, description="Keep the Triton Deployment after evaluation.")
    max_model_len: int = Field(default=32768, ge=256, le=1_048_576)
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    gpus: int = Field(default=1, ge=0, le=8)
    ready_timeout_seconds: int = Field(
        default=1800,
        ge=30,
        le=86_400,
        description=(
            "How long the Triton Deployment may go without a ready pod (its progressDeadlineSeconds) before the "
            "run fails with ServingFailed: a server that never passes its readiness probe (a broken adapter "
            "path, a model that does not load) ends the run instead of leaving it waiting."
        ),
    )
    resources: Resources = Field(default_factory=lambda: Resources(cpu="8", memory="64Gi"))


Benchmark = Literal["gpqa_diamond", "gpqa_main", "mmlu"]
Mode = Literal["on", "off"]
ALL_BENCHMARKS: tuple[Benchmark, ...] = ("gpqa_diamond", "gpqa_main", "mmlu")
ALL_MODES: tuple[Mode, ...] = ("on", "off")


class EvaluationSpec(ApiModel):
    model_config = section_config("spec.evaluation", immutable=True)

    benchmarks: UniqueList[Benchmark] = Field(default_factory=lambda: list(ALL_BENCHMARKS), min_length=1, max_length=3)
    modes: UniqueList[Mode] = Field(default_factory=lambda: list(ALL_MODES), min_length=1, max_length=2)
    compare_base: bool = Field(default=True, description="Also evaluate the base model without the adapter.")
    max_tokens: int = Field(default=16384, ge=1, le=1_048_576)
    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    concurrency: int = Field(default=64, ge=1, le=4096)
    sample_limit: int | None = Field(
        default=None, ge=1, le=MAX_COUNT, description="Evaluate at most this many per benchmark."
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="Seed for GPQA choice shuffling.")
    data_dir: str | None = Field(
        default=None,
        max_length=MAX_TEXT,
        pattern=r"^/\S*$",
        description="Local JSONL/Parquet benchmarks on the volume instead of the hub.",
    )
    resources: Resources = Field(default_factory=lambda: Resources(cpu="2", memory="8Gi"))


class StorageSpec(ApiModel):
    model_config = section_config("spec.storage", immutable=True)

    existing_claim: SubdomainName | None = Field(default=None, description="Use this PVC instead of creating one.")
    size: PositiveQuantity = Field(default="500Gi", description="Size of the PVC the operator creates.")
    storage_class_name: SubdomainName | None = Field(
        default=None, description="StorageClass of the PVC the operator creates; the cluster default when unset."
    )
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"] = "ReadWriteOnce"
    reclaim_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="Retain keeps the created PVC (and the trained adapter on it) when the run is deleted.",
    )


#: Where `make images` tags the images (`make images-push REGISTRY=...` retags them); the tag is the version.
IMAGE_REGISTRY = "ghcr.io/reasoning-operator"
# An OCI image reference as containerd/distribution parse it: [registry[:port]/]path[:tag][@sha256:digest].
# The first component is a registry only with a dot, a port or as localhost (else it is a lowercase path
# component); path components are lowercase (separators . _ __ -), a tag is [A-Za-z0-9_.-] up to 128.
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REGISTRY_HOST = rf"(?:(?:(?:localhost|{_HOST_PART}(?:\.{_HOST_PART})+)(?::[0-9]+)?|{_HOST_PART}:[0-9]+)/)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE_PATTERN = (
    rf"^{_REGISTRY_HOST}{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@sha256:[a-f0-9]{64})?$"
)


def default_image(name: str) -> str:
    """The reference `make images` builds for image `name` (scripts/images/build.py reads it from here)."""
    from reasoning_operator import __version__

    return f"{IMAGE_REGISTRY}/{name}:{__version__}"


ImageReference = Annotated[
    str,
    Field(
        min_length=1,
        max_length=512,
        pattern=IMAGE_REFERENCE_PATTERN,
        description="An image reference, [registry[:port]/]name[:tag][@sha256:digest].",
    ),
]


class ImagesSpec(ApiModel):
    """The stage images; the defaults are what `make images` builds (images/README.md)."""

    curation: ImageReference = default_image("curation")
    training: ImageReference = default_image("training")
    serving: ImageReference = default_image("serving")
    evaluation: ImageReference = default_image("evaluation")
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"


_FULL_NEEDS_PYTRITON = (
    "spec.serving.backend vllm serves a LoRA adapter beside the base model; spec.training.method full needs "
    "spec.serving.backend pytriton"
)
#: Combinations no serving backend can serve, rejected at admission (naming both fields) instead of after training.
_RUN_RULES = [
    Rule(
        # has(): the apiserver also checks the rule against the schema's own default ({}), which has no sections.
        "!(has(self.training) && has(self.training.method) && self.training.method == 'full'"
        " && (!has(self.serving) || !has(self.serving.backend) || self.serving.backend == 'vllm'))",
        lambda spec: not (spec.training.method == "full" and spec.serving.backend == "vllm"),
        _FULL_NEEDS_PYTRITON,
        ".serving.backend",
    ),
]


class ReasoningRunSpec(ApiModel):
    model_config = ConfigDict(
        **ApiModel.model_config, json_schema_extra={"x-kubernetes-validations": [r.entry() for r in _RUN_RULES]}
    )

    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    curation: CurationSpec = Field(default_factory=CurationSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    storage: StorageSpec = Field(default_factory=StorageSpec)
    images: ImagesSpec = Field(default_factory=ImagesSpec)
    tracking: TrackingSpec | None = Field(
        default=None, description="Experiment tracking beyond the TensorBoard files on the volume: MLflow."
    )
    export: ExportSpec | None = Field(
        default=None, description="Export the trained model after evaluation: merged directory and/or adapter."
    )
    cache: CacheSpec = Field(
        default_factory=CacheSpec,
        description="Reuse a finished run's curated data and trained model where the inputs are the same.",
    )
    progress_deadline_seconds: int = Field(
        default=1800,
        ge=10,
        le=604_800,
        description=(
            "How long a stage may wait without progress (no node fits its pod, a container never starts, "
            "serving never gets ready) before the Stalled condition says so, with the reason. The run keeps "
            "waiting: capacity may still come."
        ),
    )

    suspend: bool = Field(
        default=False,
        description=(
            "Stop the run where it is: the current stage Job is suspended (its pods are deleted), serving is "
            "scaled to 0 and no new stage starts; the phase is kept and the Suspended condition says so. Set "
            "back to false to continue (training resumes from its latest checkpoint)."
        ),
    )
    queue_name: LabelValue | None = Field(
        default=None,
        description=(
            f"Kueue LocalQueue for the stage Jobs: each is created with the {QUEUE_NAME_LABEL} label and "
            f"suspended, and Kueue starts it on admission. Defaults to the run's own {QUEUE_NAME_LABEL} label."
        ),
    )

    @model_validator(mode="after")
    def _servable(self) -> ReasoningRunSpec:
        check_rules(self, _RUN_RULES)
        return self

    def tokenizer(self) -> str:
        return self.curation.tokenizer or self.model.name
