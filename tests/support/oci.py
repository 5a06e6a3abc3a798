"""Hand-made single-layer OCI image archives (no registry, no base image, no build engine).

The real node's pause image and the tests' busybox image are a few static files; an OCI image layout in a
tar is all ``ctr -n k8s.io images import`` needs, and writing it takes milliseconds where a build engine
would need installing on a fresh CI machine. Archives are deterministic (mtime 0, root-owned entries).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageFile:
    """One entry of the layer: a regular file (``data``), a directory (``data is None``) or a symlink."""

    path: str
    data: bytes | None = None
    mode: int = 0o644
    symlink_to: str | None = None


@dataclass(frozen=True)
class ImageSpec:
    """What goes into the archive: the reference containerd will know it by, the files and the config."""

    reference: str  # e.g. "registry.k8s.io/pause:3.10.2"
    files: Sequence[ImageFile]
    entrypoint: Sequence[str] = ()
    cmd: Sequence[str] = ()
    user: str = ""
    env: Mapping[str, str] = field(default_factory=lambda: {"PATH": DEFAULT_PATH})


def _layer(files: Sequence[ImageFile]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for f in sorted(files, key=lambda f: f.path):
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            info.mode = f.mode
            if f.symlink_to is not None:
                info.type, info.linkname = tarfile.SYMTYPE, f.symlink_to
                tar.addfile(info)
            elif f.data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(f.data)
                tar.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()


def _descriptor(media_type: str, blob: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob)}


def write_oci_archive(spec: ImageSpec, path: Path) -> Path:
    """Write ``spec`` as an OCI image-layout tar at ``path``; returns ``path``."""
    layer = _layer(spec.files)
    layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
    config_doc: dict[str, object] = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": [f"{k}={v}" for k, v in spec.env.items()],
            "Entrypoint": list(spec.entrypoint) or None,
            "Cmd": list(spec.cmd) or None,
            "User": spec.user,
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "tests/support/oci.py", "created": "1970-01-01T00:00:00Z"}],
        "created": "1970-01-01T00:00:00Z",
    }
    config = json.dumps(config_doc, sort_keys=True).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": _descriptor(CONFIG_MEDIA_TYPE, config),
            "layers": [_descriptor(LAYER_MEDIA_TYPE, layer)],
        },
        sort_keys=True,
    ).encode()
    manifest_desc = _descriptor(MANIFEST_MEDIA_TYPE, manifest)
    # containerd names the imported image after io.containerd.image.name (the full reference).
    manifest_desc["annotations"] = {
        "io.containerd.image.name": spec.reference,
        "org.opencontainers.image.ref.name": spec.reference.rsplit(":", 1)[-1],
    }
    index = json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}, sort_keys=True).encode()

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for blob in (layer, config, manifest):
            add(f"blobs/sha256/{hashlib.sha256(blob).hexdigest()}", blob)
    return path


def static_binary_image(
    reference: str,
    binary: Path,
    *,
    install_as: str,
    applets: Sequence[str] = (),
    entrypoint: Sequence[str] = (),
    user: str = "",
) -> ImageSpec:
    """An image holding one static binary at ``install_as`` (plus ``applets`` symlinked to it, for busybox)
    and an empty, world-writable ``/tmp``."""
    bin_dir = install_as.rsplit("/", 1)[0] or "/"
    files: list[ImageFile] = [
        ImageFile("/tmp", mode=0o1777),
        ImageFile(install_as, data=binary.read_bytes(), mode=0o755),
    ]
    if bin_dir != "/":
        files.append(ImageFile(bin_dir, mode=0o755))
    name = install_as.rsplit("/", 1)[-1]
    files += [ImageFile(f"{bin_dir}/{a}", symlink_to=name, mode=0o777) for a in applets if a != name]
    return ImageSpec(reference=reference, files=files, entrypoint=entrypoint, user=user)
