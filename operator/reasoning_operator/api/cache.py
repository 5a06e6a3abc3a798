"""`spec.cache` and `status.cache`: reuse of a finished run's curated data and trained model.

Opt-in per run. Stage outputs then live on a user-provided claim, one directory per stage key; a run whose
stage key matches a finished run's skips that stage's Job."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import ApiModel, Rule, check_rules, section_config
from .validation import SubdomainName

_CACHE_RULES = [
    Rule(
        "!self.enabled || has(self.claimName)",
        lambda c: not c.enabled or c.claim_name is not None,
        "spec.cache.claimName is required when spec.cache.enabled is true",
        ".claimName",
    ),
]


class CacheSpec(ApiModel):
    model_config = section_config("spec.cache", immutable=True, rules=_CACHE_RULES)

    enabled: bool = Field(default=False, description="Reuse (and offer) curated data and trained models by key.")
    claim_name: SubdomainName | None = Field(
        default=None,
        description=(
            "A PVC in the run's namespace that you provide and that the operator never creates or deletes "
            "(ReadWriteMany where runs' pods land on several nodes). Stage outputs go to "
            "/cache/<stage>/<key>/ on it."
        ),
    )

    @model_validator(mode="after")
    def _cross_field(self) -> CacheSpec:
        check_rules(self, _CACHE_RULES)
        return self


class CacheKeys(ApiModel):
    curation: str | None = Field(default=None, description="Key of the curated data's effective inputs.")
    training: str | None = Field(default=None, description="Key of the curated data plus the training config.")


class CacheStatus(ApiModel):
    claim_name: str | None = None
    keys: CacheKeys = Field(default_factory=CacheKeys)
