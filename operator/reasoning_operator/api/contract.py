"""The operator <-> job wire contract: every name, path and format both sides must agree on, stated once.

The operator builds pods, ConfigMaps and Services around these; the jobs read and write them. Both import
this module (the jobs may import `reasoning_operator.api` and nothing else of the operator), so there are no
copies to keep in step. Plain constants and small pure functions; no dependency beyond the API's own models.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import ValidationError

from .results import CurationProgress, TrainingProgress
from .stage_defs import STAGES
from .status import Stage

# -- the job command lines -----------------------------------------------------------------------------------

#: The one console script of both images; each stage is one of its subcommands.
PROGRAM = "reasoning"
#: `reasoning <subcommand> --config FILE`, by stage (each stage's definition names its own).
JOB_SUBCOMMANDS: dict[Stage, str] = {d.stage: d.subcommand for d in STAGES}

# -- the stage config ----------------------------------------------------------------------------------------

#: Where the run's ConfigMap is mounted (read-only) in every stage pod.
CONFIG_DIR = "/etc/reasoning"


def config_file_name(stage: Stage) -> str:
    """The stage config's key in the run's ConfigMap, i.e. its file name under CONFIG_DIR (and in a local run)."""
    return f"{stage.value}.yaml"


def config_path(stage: Stage) -> str:
    """The stage config inside a pod."""
    return f"{CONFIG_DIR}/{config_file_name(stage)}"


def job_args(stage: Stage, config: str | None = None) -> list[str]:
    """The arguments after PROGRAM that run a stage's job on its config (the pod's by default)."""
    return [JOB_SUBCOMMANDS[stage], "--config", config or config_path(stage)]


# -- the result ----------------------------------------------------------------------------------------------

#: The kubelet's default terminationMessagePath, which the stage containers keep.
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
#: Environment variable that moves the termination message elsewhere (the local runner, tests).
TERMINATION_MESSAGE_PATH_ENV = "TERMINATION_MESSAGE_PATH"
#: Kubernetes keeps at most 4096 bytes of a termination message.
TERMINATION_MESSAGE_LIMIT = 4096
#: The full result, written into the stage's output directory beside its artifacts.
SUMMARY_FILE = "summary.json"


def termination_message(wire: dict[str, Any]) -> str:
    """A result as its termination message: compact, key-sorted JSON. Raises ValueError past the limit
    rather than truncating: cut JSON would not parse, and the operator would report no result."""
    compact = json.dumps(wire, separators=(",", ":"), sort_keys=True)
    size = len(compact.encode())
    if size > TERMINATION_MESSAGE_LIMIT:
        raise ValueError(f"result is {size} bytes, over the {TERMINATION_MESSAGE_LIMIT}-byte limit")
    return compact


# -- progress ------------------------------------------------------------------------------------------------

Progress = TypeVar("Progress", TrainingProgress, CurationProgress)


def progress_line(progress: TrainingProgress | CurationProgress) -> str:
    """The line a job prints on stdout as it goes (training per logged step, curation per block written):
    compact JSON of the wire (camelCase) form. The two kinds share no required key, so neither parses as the
    other."""
    return json.dumps(progress.to_wire(), separators=(",", ":"))


def parse_progress_line(line: str, kind: type[Progress]) -> Progress | None:
    """A line `progress_line` wrote for ``kind``, else None: exactly its keys (camelCase, no others), valid
    values."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        return kind.model_validate_json(line, by_alias=True, by_name=False)
    except ValidationError:
        return None


# -- serving -------------------------------------------------------------------------------------------------

#: The serving job's ports (Triton's HTTP/KServe v2, gRPC and metrics; the OpenAI-compatible proxy), which the
#: operator's Deployment and Service expose under the same names.
HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
OPENAI_PORT = 9000
SERVING_PORTS: dict[str, int] = {"http": HTTP_PORT, "grpc": GRPC_PORT, "metrics": METRICS_PORT, "openai": OPENAI_PORT}

#: The served models' names: the base model and the trained one (adapter or fully fine-tuned weights).
BASE_MODEL_NAME = "base"
ADAPTER_MODEL_NAME = "trained"

#: The generate tensors every served model takes and gives (KServe v2 infer, `/v2/models/NAME/generate`);
#: all BYTES [1] but NUM_OUTPUT_TOKENS. The user message; the chat template is applied on the server.
TEXT_INPUT = "text_input"
#: Optional system message: the reasoning toggle (REASONING_ON / REASONING_OFF).
SYSTEM_PROMPT = "system_prompt"
#: Optional JSON object: max_tokens, temperature, top_p, seed.
SAMPLING_PARAMETERS = "sampling_parameters"
#: The generated text.
TEXT_OUTPUT = "text_output"
#: How many tokens were generated (INT32 [1]).
NUM_OUTPUT_TOKENS = "num_output_tokens"
#: "stop" (end of turn) or "length" (max_tokens reached).
FINISH_REASON = "finish_reason"

# -- reasoning -----------------------------------------------------------------------------------------------

#: The system prompts that turn reasoning on and off (the Llama-Nemotron convention): what curation puts in
#: every sample, what the trained model learns to follow, what evaluation sends.
REASONING_ON = "detailed thinking on"
REASONING_OFF = "detailed thinking off"
#: The reasoning block of a reply with reasoning on; a reply with reasoning off has neither tag.
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def reasoning_system_prompt(mode: str) -> str:
    """The system prompt for reasoning mode 'on' or 'off'; any other mode is a ValueError."""
    if mode not in ("on", "off"):
        raise ValueError(f"reasoning mode must be 'on' or 'off', not {mode!r}")
    return REASONING_ON if mode == "on" else REASONING_OFF
