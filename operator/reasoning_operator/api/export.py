"""`spec.export`: after evaluation, the trained model as a merged Hugging Face directory (safetensors,
tokenizer, chat template, a generated model card) and/or the PEFT adapter, written to the run's volume, an
S3 bucket or a Hugging Face repo. Credentials only by Secret reference (the export pod's environment). The
export pod asks for spec.training.resources without the GPU: it loads the same model, on the CPU."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import ApiModel, Rule, check_rules, section_config
from .validation import SubdomainName

EXPORT_DESTINATION_PATTERN = (
    r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?|hf://[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|/\S*)$"
)

_SOMETHING = Rule(
    "self.merged || self.adapter",
    lambda spec: spec.merged or spec.adapter,
    "spec.export needs merged or adapter (or both)",
    ".merged",
)
_REMOTE_NEEDS_SECRET = Rule(
    "!has(self.destination) || self.destination.startsWith('/') || has(self.credentialsSecret)",
    lambda spec: spec.destination is None or spec.destination.startswith("/") or spec.credentials_secret is not None,
    "spec.export.destination s3:// or hf:// needs spec.export.credentialsSecret",
    ".credentialsSecret",
)


class ExportSpec(ApiModel):
    model_config = section_config("spec.export", rules=[_SOMETHING, _REMOTE_NEEDS_SECRET])

    merged: bool = Field(
        default=True, description="A merged Hugging Face directory (safetensors, tokenizer, chat template, card)."
    )
    adapter: bool = Field(default=False, description="The PEFT adapter (LoRA runs), with the same model card.")
    destination: str | None = Field(
        default=None,
        max_length=1024,
        pattern=EXPORT_DESTINATION_PATTERN,
        description=(
            "An absolute path on the run's volume, s3://BUCKET/PREFIX or hf://ORG/NAME (a model repo); "
            "default: export/ in the run's directory."
        ),
    )
    credentials_secret: SubdomainName | None = Field(
        default=None,
        description=(
            "Secret whose keys become the export pod's environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
            "(and AWS_ENDPOINT_URL, AWS_REGION) for s3://, HF_TOKEN for hf://."
        ),
    )

    @model_validator(mode="after")
    def _check(self) -> ExportSpec:
        check_rules(self, [_SOMETHING, _REMOTE_NEEDS_SECRET])
        return self

    def remote(self) -> bool:
        return self.destination is not None and not self.destination.startswith("/")
