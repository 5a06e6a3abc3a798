"""The run's volume: every stage reads its input from, and writes its output to, this one claim."""

from __future__ import annotations

from typing import Any

from ..run import Run


def build_claim(run: Run) -> dict[str, Any] | None:
    """The PVC the operator creates, or None when the user brought one (spec.storage.existingClaim)."""
    storage = run.spec.storage
    if storage.existing_claim:
        return None
    spec: dict[str, Any] = {
        "accessModes": [storage.access_mode],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name is not None:
        spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        # Retain: no owner reference, so deleting the run keeps the trained adapter.
        "metadata": run.metadata(run.claim_name, component="storage", owned=storage.reclaim_policy == "Delete"),
        "spec": spec,
    }
