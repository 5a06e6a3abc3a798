"""The wire contract's behaviour: the progress line reads back as written and nothing else reads as one; the
termination message is compact JSON within Kubernetes' limit; the reasoning prompts take only on and off."""

from __future__ import annotations

import json

import pytest

from reasoning_operator.api import CurationProgress, TrainingProgress
from reasoning_operator.api.contract import (
    TERMINATION_MESSAGE_LIMIT,
    parse_progress_line,
    progress_line,
    reasoning_system_prompt,
    termination_message,
)


@pytest.mark.parametrize(
    "progress",
    [
        TrainingProgress(
            step=840,
            max_steps=2000,
            loss=0.712345,
            learning_rate=9.504844339512095e-05,
            tokens_per_second=18848.4,
            eta_seconds=3600.5,
        ),
        TrainingProgress(step=0, max_steps=1),  # the optional values left out
    ],
)
def test_a_progress_line_reads_back_as_written(progress: TrainingProgress) -> None:
    line = progress_line(progress)
    assert "\n" not in line
    assert parse_progress_line(line, TrainingProgress) == progress
    assert parse_progress_line(f"  {line}\r", TrainingProgress) == progress  # a pod log's line ends are not part of it


@pytest.mark.parametrize(
    "line",
    [
        "",
        "train:  42%|####      | 840/2000",
        '{"step": 40, "maxSteps": 2000',  # cut off
        "[40, 2000]",
        '{"step": 40, "max_steps": 2000}',  # the Python names are not what the job writes
        '{"step": 40, "maxSteps": 2000, "lr": 0.0001}',  # nor are the old aliases
        '{"step": 40}',
        '{"step": -1, "maxSteps": 2000}',
        '{"step": 40, "maxSteps": 0}',
        '{"step": "forty", "maxSteps": 2000}',
    ],
)
def test_anything_else_is_not_a_progress_line(line: str) -> None:
    assert parse_progress_line(line, TrainingProgress) is None


def test_a_curation_progress_line_reads_back_and_is_never_taken_for_a_training_one() -> None:
    curation = CurationProgress(blocks_done=3, blocks_total=8)
    training = TrainingProgress(step=3, max_steps=8)
    assert progress_line(curation) == '{"blocksDone":3,"blocksTotal":8}'
    assert parse_progress_line(progress_line(curation), CurationProgress) == curation
    assert parse_progress_line(progress_line(curation), TrainingProgress) is None
    assert parse_progress_line(progress_line(training), CurationProgress) is None
    for wrong in ('{"blocksDone": -1, "blocksTotal": 8}', '{"blocksDone": 3}', '{"blocksDone": 3, "blocks": 8}'):
        assert parse_progress_line(wrong, CurationProgress) is None, wrong


def test_the_termination_message_is_compact_sorted_json_of_the_result() -> None:
    wire = {"samplesWritten": 3, "dropped": {"language": 1, "empty_think": 2}}
    message = termination_message(wire)
    assert message == '{"dropped":{"empty_think":2,"language":1},"samplesWritten":3}'
    assert json.loads(message) == wire


def test_the_termination_message_may_fill_the_limit_but_not_pass_it() -> None:
    frame = len(termination_message({"x": ""}).encode())
    fits = {"x": "a" * (TERMINATION_MESSAGE_LIMIT - frame)}
    assert len(termination_message(fits).encode()) == TERMINATION_MESSAGE_LIMIT
    with pytest.raises(ValueError, match=f"{TERMINATION_MESSAGE_LIMIT + 1} bytes, over the 4096-byte limit"):
        termination_message({"x": "a" * (TERMINATION_MESSAGE_LIMIT - frame + 1)})


def test_reasoning_prompts_are_on_or_off() -> None:
    assert reasoning_system_prompt("on") == "detailed thinking on"
    assert reasoning_system_prompt("off") == "detailed thinking off"
    with pytest.raises(ValueError, match="'on' or 'off'"):
        reasoning_system_prompt("maybe")
