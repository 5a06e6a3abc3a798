"""Make Triton's Python-backend stub load the running interpreter's libpython.

PyTriton's stub for 3.11 links `libpython3.11.so.1.0` by name. On a machine whose interpreter is not the
system's (pyenv, uv-managed Pythons) the stub would pick up the system library, and models crash at load with
`'_thread.RLock' object has no attribute '_recursion_count'`. Putting our own LIBDIR first on
LD_LIBRARY_PATH (inherited by the tritonserver process PyTriton spawns) fixes it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import MutableMapping
from pathlib import Path


def interpreter_library_dir() -> Path | None:
    """The directory holding this interpreter's shared libpython, or None for a static build."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if not libdir:
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = Path(libdir)
    if any(path.glob(f"libpython{version}*.so*")):
        return path
    return None


def prefer_interpreter_libpython(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Prepend our libpython directory to LD_LIBRARY_PATH (once); returns the directory, or None if not needed."""
    env = os.environ if environ is None else environ
    libdir = interpreter_library_dir()
    if libdir is None:
        return None
    current = [entry for entry in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if entry]
    if not current or current[0] != str(libdir):
        env["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir), *[c for c in current if c != str(libdir)]])
    return libdir
