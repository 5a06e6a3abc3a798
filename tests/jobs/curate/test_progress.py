"""The curation job's block progress: what the operator reads from its log (contract.progress_line)."""

from __future__ import annotations

import io
import time
from pathlib import Path

from reasoning_jobs.curate.curriculum import CATEGORIES
from reasoning_jobs.curate.progress import BlockProgress, blocks_written
from reasoning_operator.api import CurationProgress
from reasoning_operator.api.contract import parse_progress_line


def _block(keys: Path, stem: str, finished: bool) -> None:
    (keys / stem).mkdir(parents=True)
    (keys / stem / "rank.npy").write_bytes(b"x")
    if finished:
        (keys / stem / CATEGORIES).write_text("[]")


def test_a_block_counts_once_its_keys_are_finished(tmp_path: Path) -> None:
    assert blocks_written(tmp_path / "absent") == 0
    _block(tmp_path, "part-00000-000000", finished=True)
    _block(tmp_path, "part-00000-000001", finished=False)  # a writer halfway, or a lost worker's
    assert blocks_written(tmp_path) == 1


def test_lines_at_the_start_as_blocks_finish_and_at_the_end(tmp_path: Path) -> None:
    out = io.StringIO()
    with BlockProgress(tmp_path, total=3, interval=0.01, stream=out, repeat=60):
        _block(tmp_path, "a", finished=True)
        deadline = time.monotonic() + 5
        while '"blocksDone":1' not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        _block(tmp_path, "b", finished=True)
        _block(tmp_path, "c", finished=True)
    seen = [parse_progress_line(line, CurationProgress) for line in out.getvalue().splitlines()]
    assert all(p is not None for p in seen), out.getvalue()
    done = [p.blocks_done for p in seen if p is not None]
    assert done[0] == 0 and 1 in done and done[-1] == 3 and done == sorted(set(done)), done  # none repeated
    assert {p.blocks_total for p in seen if p is not None} == {3}


def test_a_failed_pipeline_claims_no_final_count(tmp_path: Path) -> None:
    out = io.StringIO()
    try:
        with BlockProgress(tmp_path, total=2, interval=60, stream=out):
            _block(tmp_path, "a", finished=True)
            raise RuntimeError("a block failed")
    except RuntimeError:
        pass
    assert out.getvalue().splitlines() == ['{"blocksDone":0,"blocksTotal":2}']


def test_an_unchanged_count_is_printed_again_for_a_log_tail_to_hold_it(tmp_path: Path) -> None:
    out = io.StringIO()
    with BlockProgress(tmp_path, total=2, interval=0.01, stream=out, repeat=0.05):
        time.sleep(0.5)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and set(lines) == {'{"blocksDone":0,"blocksTotal":2}'}, lines
