"""A `reasoning run` killed outright (SIGKILL, OOM) takes its stage processes with it: a stage or the server left
behind kept its port and CPU (found after a timed-out quickstart in the gate, whose server ran on)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from reasoning_jobs.local import processes

    pidfile, how = sys.argv[1], sys.argv[2]
    child = [sys.executable, "-c", f"import os, time; open({pidfile!r}, 'w').write(str(os.getpid())); time.sleep(600)"]
    processes._command = lambda stage, config, extra: child
    here = Path(pidfile).parent
    if how == "stage":
        processes.run_stage(processes.Stage.TRAINING, here / "c.yaml", here / "log", here / "term", echo=False)
    else:
        processes.Server(here / "c.yaml", here / "log", "http://127.0.0.1:9/never").start(timeout=600)
    """
)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
@pytest.mark.parametrize("how", ["stage", "server"])
def test_a_killed_runner_leaves_no_stage_process(tmp_path: Path, how: str) -> None:
    pidfile = tmp_path / "child.pid"
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, str(pidfile), how], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text()):
            assert runner.poll() is None and time.monotonic() < deadline, "the runner did not start its stage"
            time.sleep(0.1)
        child = int(pidfile.read_text())
        assert not _gone(child)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        deadline = time.monotonic() + 15
        while not _gone(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(child), f"the {how} process outlived its killed runner"
    finally:
        if runner.poll() is None:
            runner.kill()
        if pidfile.exists() and pidfile.read_text() and not _gone(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
