"""`make images` on a machine without a container engine says what to install (and installs nothing here)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_without_podman_it_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "id", "mkdir", "cat", "mv"):  # what engine.sh needs besides the engine; no apt-get
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        [str(bin_dir / "bash"), str(REPO / "scripts/images/engine.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "no container engine: podman" in result.stderr
    assert "apt-get install podman buildah runc mmdebstrap" in result.stderr
    assert not (tmp_path / ".cache").exists()  # nothing written before the check
