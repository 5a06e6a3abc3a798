"""Each stage runs as its own process (`reasoning <stage> --config FILE`), exactly as in its container: the
output goes to the terminal and to a log file, and the result comes back through the termination-message
file the job writes."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from reasoning_operator.api import Stage
from reasoning_operator.api.contract import TERMINATION_MESSAGE_PATH_ENV, job_args


class StageFailedError(RuntimeError):
    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        #: What the stage's status must still say after its one-line failure message (e.g. where --force
        #: moved the earlier artifacts): the message's first line alone is what status shows.
        self.note = ""


#: a traceback's last line (`module.Error: message`), which names what went wrong
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|NotFound|Exit|Interrupt)\b.*")


def last_error(lines: list[str]) -> str:
    """The last exception line of a log tail, else its last non-blank line: what a one-line status shows."""
    found = [line.strip() for line in lines if _EXCEPTION_LINE.match(line.strip())]
    if found:
        return found[-1][:300]
    rest = [line.strip() for line in lines if line.strip()]
    return rest[-1][:300] if rest else "no output"


def _libc_prctl() -> object | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _libc_prctl()  # resolved here: between fork and exec only the call itself runs
PR_SET_PDEATHSIG = 1


def _ends_with_runner() -> None:
    """A stage process gets SIGTERM when the runner dies, by SIGKILL too (Linux): a killed `reasoning run` left
    its server (own session, so Ctrl-C does not reach it) and any running stage behind, holding ports and CPU."""
    if callable(_PRCTL):
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _command(stage: Stage, config: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "reasoning_operator.cli", *job_args(stage, str(config)), *extra]


def _env(termination: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if termination is not None:
        env[TERMINATION_MESSAGE_PATH_ENV] = str(termination)
    return env


def _pump(source: IO[bytes], log: IO[bytes], echo: bool) -> None:
    """Copy bytes as they come (progress bars redraw with \\r, so no line buffering)."""
    while chunk := source.read1(4096) if hasattr(source, "read1") else source.read(4096):
        log.write(chunk)
        log.flush()
        if echo:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()


def run_stage(
    stage: Stage,
    config: Path,
    log_path: Path,
    termination: Path,
    extra: list[str] | None = None,
    echo: bool = True,
) -> str:
    """Run one stage to completion; return its termination message (the compact result JSON)."""
    name = stage.value
    termination.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            _command(stage, config, extra or []),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_env(termination),
            preexec_fn=_ends_with_runner,  # the runner starts stages from its one thread
        )
        assert proc.stdout is not None
        try:
            _pump(proc.stdout, log, echo)
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
            raise
    if code != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise StageFailedError(
            name, f"{name} exited with code {code}: {last_error(tail)} (see {log_path}):\n" + "\n".join(tail)
        )
    if not termination.is_file() or not termination.read_text().strip():
        raise StageFailedError(name, f"{name} exited 0 but reported no result ({termination} is missing or empty)")
    return termination.read_text(encoding="utf-8")


class Server:
    """The serving stage as a background process, ready when Triton's /v2/health/ready says so."""

    def __init__(self, config: Path, log_path: Path, ready_url: str, extra: list[str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.ready_url = ready_url
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            _command(Stage.SERVING, self.config, self.extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(None),
            start_new_session=True,
            preexec_fn=_ends_with_runner,  # the runner starts stages from its one thread
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
                raise StageFailedError(
                    "serving",
                    f"the server exited with code {self.proc.returncode}: {last_error(tail)} (see {self.log_path}):\n"
                    + "\n".join(tail),
                )
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise StageFailedError("serving", f"the server was not ready at {self.ready_url} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
