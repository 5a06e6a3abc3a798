"""A PyTriton unpacked without file modes is refused naming the binary, not with PyTriton's bare
`CommandNotFound: <path>` after every start attempt (what the lent H200 showed for a zipfile-unpacked wheel)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytriton

from reasoning_jobs.serve.pytriton_backend import check_triton_binaries


def test_the_installed_pytriton_passes() -> None:
    check_triton_binaries(Path(pytriton.__file__).parent)


def test_a_binary_without_its_execute_bits_is_named(tmp_path: Path) -> None:
    installed = Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
    assert installed.is_file()
    binary = tmp_path / "tritonserver" / "bin" / "tritonserver"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(installed.read_bytes()[:4096])  # the ELF header is enough: only the mode is checked
    binary.chmod(0o644)
    with pytest.raises(RuntimeError, match=r"tritonserver/bin/tritonserver is not executable"):
        check_triton_binaries(tmp_path)
    binary.chmod(0o755)
    check_triton_binaries(tmp_path)
