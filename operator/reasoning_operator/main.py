"""`reasoning operator`: run the kopf operator against the current kubeconfig or in-cluster config."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import typer


def main(
    namespace: list[str] = typer.Option([], "--namespace", "-n", help="Watch only these namespaces."),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Watch every namespace."),
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", envvar="KUBECONFIG", help="Kubeconfig file."),
    metrics_port: int = typer.Option(8080, help="Prometheus metrics port (0 disables)."),
    health_port: int = typer.Option(
        8081, help="Port of /healthz (liveness) and /readyz (readiness: not ready while the apiserver is away)."
    ),
    resync_seconds: float = typer.Option(10.0, help="Full reconcile of every run at least this often."),
    shards: int | None = typer.Option(
        None, help="Operator processes to spread the runs over (0: one per usable CPU); REASONING_SHARDS, else 1."
    ),
    log_format: str = typer.Option("plain", help="plain or json."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Reconcile ReasoningRuns into curation, training, serving and evaluation."""
    if not namespace and not all_namespaces:
        raise typer.BadParameter("pass --namespace NS (repeatable) or --all-namespaces")
    from pydantic import ValidationError

    from .settings import OperatorSettings

    flags: dict[str, Any] = {
        "kubeconfig": kubeconfig,
        "namespaces": () if all_namespaces else tuple(namespace),
        "metrics_port": metrics_port,
        "health_port": health_port,
        "resync_seconds": resync_seconds,
    }
    if shards is not None:  # else REASONING_SHARDS, else 1
        flags["shards"] = shards
    try:  # flags over the environment (REASONING_WORKERS and friends), checked once
        settings = OperatorSettings(**flags)
    except ValidationError as err:
        raise typer.BadParameter(str(err)) from err
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login (kubernetes client) reads only this
    from .logs import configure_logging

    configure_logging(json_format=log_format == "json", verbose=verbose)

    import kopf

    from . import handlers  # registers the handlers
    from .shards import ALL, Shard, shard_count, supervise

    def operate(shard: Shard = ALL, internal: socket.socket | None = None) -> None:
        if shard.count > 1:
            configure_logging(json_format=log_format == "json", verbose=verbose, shard=shard.index)
        handlers.configure(settings, shard, internal)
        asyncio.run(
            kopf.operator(
                clusterwide=all_namespaces,
                namespaces=[] if all_namespaces else namespace,
                standalone=True,
            )
        )
        logging.getLogger(__name__).info("operator stopped")

    count = shard_count(settings.shards)
    if count == 1:
        operate()
        return
    code = supervise(
        count,
        operate,
        metrics=(settings.metrics_addr, settings.metrics_port) if settings.metrics_port else None,
        health=(settings.health_addr, settings.health_port) if settings.health_port else None,
    )
    if code:
        raise typer.Exit(code)
