"""Fixtures for the evaluation tests: distinct free loopback ports."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


@pytest.fixture(scope="session")
def ports() -> Callable[[], int]:
    handed: set[int] = set()

    def next_port() -> int:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port: int = sock.getsockname()[1]
            if port not in handed:
                handed.add(port)
                return port

    return next_port
