"""`reasoning operator`: run the kopf operator against the current kubeconfig or in-cluster config."""

from __future__ import annotations

import asyncio
import logging
import os

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
    log_format: str = typer.Option("plain", help="plain or json."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Reconcile ReasoningRuns into curation, training, serving and evaluation."""
    if not namespace and not all_namespaces:
        raise typer.BadParameter("pass --namespace NS (repeatable) or --all-namespaces")
    from pydantic import ValidationError

    from .settings import OperatorSettings

    try:  # flags over the environment (REASONING_WORKERS and friends), checked once
        settings = OperatorSettings(
            kubeconfig=kubeconfig,
            namespaces=() if all_namespaces else tuple(namespace),
            metrics_port=metrics_port,
            health_port=health_port,
            resync_seconds=resync_seconds,
        )
    except ValidationError as err:
        raise typer.BadParameter(str(err)) from err
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login (kubernetes client) reads only this
    from .logs import configure_logging

    configure_logging(json_format=log_format == "json", verbose=verbose)

    import kopf

    from . import handlers  # registers the handlers

    handlers.configure(settings)

    asyncio.run(
        kopf.operator(
            clusterwide=all_namespaces,
            namespaces=[] if all_namespaces else namespace,
            standalone=True,
        )
    )
    logging.getLogger(__name__).info("operator stopped")
