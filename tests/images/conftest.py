"""The image tests need podman and the images `make images` builds. Where they are missing the tests skip,
except under REASONING_REQUIRE_IMAGES=1 (scripts/check.sh sets it after building them, so CI never skips)."""

from __future__ import annotations

import os

import pytest
from tests.images.podman import engine_env, have_podman, podman


@pytest.fixture(scope="session")
def engine() -> dict[str, str]:
    if not have_podman():
        _missing("podman is not installed (make images installs it)")
    return engine_env()


@pytest.fixture(scope="session")
def require_image(engine: dict[str, str]):  # type: ignore[no-untyped-def]
    def check(ref: str) -> str:
        if podman("image", "exists", ref, env=engine, check=False).returncode != 0:
            _missing(f"{ref} is not built (make images)")
        return ref

    return check


def _missing(why: str) -> None:
    if os.environ.get("REASONING_REQUIRE_IMAGES") == "1":
        pytest.fail(why)
    pytest.skip(why)
