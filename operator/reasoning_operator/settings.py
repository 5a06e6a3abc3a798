"""The operator process's settings: one typed object, built once at start from the command line over the
environment (the chart sets some as env, e.g. REASONING_WORKERS), then handed to the kopf shell."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REASONING_", frozen=True, extra="ignore")

    kubeconfig: str | None = Field(
        default=None,
        validation_alias=AliasChoices("kubeconfig", "KUBECONFIG"),
        description="Kubeconfig file; in-cluster config when unset.",
    )
    #: Namespaces to watch; empty means every namespace. The environment form is comma-separated.
    namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    workers: int = Field(default=8, ge=1, description="Concurrent reconciles; one run is never reconciled twice.")
    shards: int = Field(
        default=1,
        ge=0,
        le=64,
        description="Operator processes the runs are spread over (by a hash of namespace/name); "
        "0: one per usable CPU, at most 8.",
    )
    resync_seconds: float = Field(default=10.0, gt=0, description="Every unfinished run is checked this often.")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="Prometheus port; 0 disables it.")
    metrics_addr: str = "0.0.0.0"
    health_port: int = Field(default=0, ge=0, le=65535, description="/healthz and /readyz port; 0 disables it.")
    health_addr: str = "0.0.0.0"

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(n.strip() for n in value.split(",") if n.strip())
        return value

    @property
    def watched(self) -> list[str] | None:
        """The namespaces the caches list and watch; None for all."""
        return list(self.namespaces) or None
