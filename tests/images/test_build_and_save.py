"""A build that cannot reach a package fails naming the package (uv's message, passed through); `save` writes
what containerd imports."""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

from scripts.images.build import BY_NAME
from tests.images.podman import podman

REPO = Path(__file__).resolve().parents[2]


def test_unreachable_package_is_named(
    engine: dict[str, str], require_image: Callable[[str], str], tmp_path: Path
) -> None:
    require_image(BY_NAME["operator"].ref)  # the base and uv are there; only the packages are out of reach
    before = podman("image", "inspect", "--format", "{{.Id}}", BY_NAME["operator"].ref, env=engine).stdout
    env = {
        **engine,
        "UV_CACHE_DIR": str(tmp_path / "empty-uv-cache"),
        "IMAGES_BUILD_FLAGS": "--no-cache --network=none",
    }
    result = subprocess.run(
        [str(REPO / ".venv/bin/python"), str(REPO / "scripts/images/build.py"), "build", "operator"],
        capture_output=True, text=True, env=env, timeout=600, cwd=REPO,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    locked = {p["name"]: p["version"] for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]}
    named = re.findall(r"Failed to (?:download|fetch)[^`]*`([a-z0-9_.-]+)==([^`]+)`", output)
    assert named and all(locked.get(name) == version for name, version in named), output[-3000:]
    assert "error: building ghcr.io/reasoning-operator/operator:0.1.0 failed" in output
    after = podman("image", "inspect", "--format", "{{.Id}}", BY_NAME["operator"].ref, env=engine).stdout
    assert after == before  # the failed build left the built image alone


def test_save_writes_an_importable_archive_named_by_the_ref(
    engine: dict[str, str], require_image: Callable[[str], str], tmp_path: Path
) -> None:
    """What `ctr -n k8s.io images import` reads: a docker archive whose manifest names the image's ref."""
    import json
    import tarfile

    ref = require_image(BY_NAME["operator"].ref)
    subprocess.run(
        [str(REPO / ".venv/bin/python"), str(REPO / "scripts/images/build.py"), "save", "--dir", str(tmp_path),
         "operator"],
        check=True, capture_output=True, text=True, env=engine, timeout=600,
    )  # fmt: skip
    archive = tmp_path / "operator-0.1.0.tar"
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [ref]
        assert all(layer in tar.getnames() for layer in manifest[0]["Layers"])
