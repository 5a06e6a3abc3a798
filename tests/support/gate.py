"""Waiting for the gate's background builds (scripts/check.sh).

The gate starts the slow builds that only some tests need (the images, the vLLM CPU environment) in the
background and runs the tests at once. It exports ``REASONING_GATE_DIR``; each build leaves ``<name>.pid``
there while it runs and ``<name>.rc`` when it ends. tests/conftest.py waits for the builds a test needs before
its timeout starts. Outside the gate the variable is unset and nothing waits.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_for_build(name: str, timeout: float = 3 * 3600) -> str | None:
    """Block until the gate's background build ``name`` has ended; returns why it failed, or None."""
    if not os.environ.get("REASONING_GATE_DIR"):
        return None
    gate_dir = Path(os.environ["REASONING_GATE_DIR"])
    pid_file, rc_file = gate_dir / f"{name}.pid", gate_dir / f"{name}.rc"
    deadline = time.monotonic() + timeout
    while pid_file.exists() and not rc_file.exists():
        try:
            pid = int(pid_file.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and not _alive(pid) and not rc_file.exists():
            return f"the gate's background build {name!r} (pid {pid}) ended without an exit status (killed?)"
        if time.monotonic() > deadline:
            return f"the gate's background build {name!r} still runs after {timeout:.0f} s"
        time.sleep(2)
    if rc_file.exists() and rc_file.read_text().strip() not in ("", "0"):
        log = gate_dir / f"{name}.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""
        return f"the gate's background build {name!r} failed (exit {rc_file.read_text().strip()}):\n{tail}"
    return None
