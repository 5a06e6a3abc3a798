"""LD_LIBRARY_PATH fix for PyTriton's Python-backend stub (see python_library.py)."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from reasoning_jobs.serve.python_library import interpreter_library_dir, prefer_interpreter_libpython


def test_prepends_interpreter_libdir_once() -> None:
    libdir = interpreter_library_dir()
    assert libdir is not None, "this interpreter is a shared build: its libpython must be found"
    assert libdir == Path(sysconfig.get_config_var("LIBDIR"))
    env = {"LD_LIBRARY_PATH": f"/opt/x:{libdir}"}
    assert prefer_interpreter_libpython(env) == libdir
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"
    prefer_interpreter_libpython(env)
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"


def test_sets_variable_when_absent() -> None:
    env: dict[str, str] = {}
    prefer_interpreter_libpython(env)
    assert env["LD_LIBRARY_PATH"] == str(interpreter_library_dir())
