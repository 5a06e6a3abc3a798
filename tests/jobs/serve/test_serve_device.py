"""Where the pytriton backend's chat model generates (chat_model.serving_device)."""

from __future__ import annotations

import pytest

from reasoning_jobs.serve.chat_model import serving_device


@pytest.mark.parametrize(
    ("gpus", "cuda", "expected"),
    [(1, True, "cuda"), (2, True, "cuda"), (0, True, "cpu"), (1, False, "cpu"), (0, False, "cpu")],
)
def test_gpu_only_when_asked_for_and_present(gpus: int, cuda: bool, expected: str) -> None:
    assert serving_device(gpus, cuda) == expected
