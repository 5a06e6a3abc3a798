"""Where the exported directories go: they are written under the stage's output directory on the volume
(the default destination), then copied to another path, an S3 prefix or a Hugging Face repo. Credentials
come from the environment (the pod's, from spec.export.credentialsSecret) and are never logged: errors
are reported with any token scrubbed from them."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .model import ExportError

log = logging.getLogger("reasoning.export")


def _scrub(message: str) -> str:
    for name in ("HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        value = os.environ.get(name)
        if value:
            message = message.replace(value, "***")
    return message


def to_path(local: Path, destination: str) -> str:
    target = Path(destination)
    if target.resolve() != local.resolve():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copytree(local, target, dirs_exist_ok=True)
    return str(target)


def to_s3(local: Path, destination: str) -> str:
    """s3fs with botocore's environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION."""
    import s3fs

    if not os.environ.get("AWS_ACCESS_KEY_ID"):
        raise ExportError(f"{destination}: no AWS_ACCESS_KEY_ID in the environment (spec.export.credentialsSecret)")
    prefix = destination.removeprefix("s3://").rstrip("/")
    filesystem = s3fs.S3FileSystem()
    try:
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            filesystem.put_file(str(path), f"{prefix}/{path.relative_to(local).as_posix()}")
    except Exception as error:  # botocore's errors name the bucket and the code, never the secret
        raise ExportError(_scrub(f"upload to {destination} failed: {error}")) from error
    return destination


def to_hub(local: Path, destination: str) -> str:
    """hf://ORG/NAME: a (private, if new) model repo; HF_TOKEN from the environment, HF_ENDPOINT if set."""
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ExportError(f"{destination}: no HF_TOKEN in the environment (spec.export.credentialsSecret)")
    from huggingface_hub import HfApi

    repo = destination.removeprefix("hf://")
    api = HfApi(token=token)
    try:
        api.create_repo(repo, repo_type="model", private=True, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(local), repo_type="model")
    except Exception as error:
        raise ExportError(_scrub(f"upload to {destination} failed: {type(error).__name__}: {error}")) from error
    return destination


def publish(local: Path, destination: str | None) -> str:
    if destination is None:
        return str(local)
    if destination.startswith("s3://"):
        return to_s3(local, destination)
    if destination.startswith("hf://"):
        return to_hub(local, destination)
    return to_path(local, destination)
