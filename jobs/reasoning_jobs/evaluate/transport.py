"""Which evaluation client a server URL selects: KServe v2 (tritonclient) or OpenAI chat completions."""

from __future__ import annotations

from typing import Any

from .client import TritonChatClient
from .openai_client import OpenAIChatClient, is_openai_url


def make_client(url: str, concurrency: int) -> Any:
    """KServe v2 (tritonclient) for `http://host:port`, OpenAI chat completions for `http://host:port/v1`."""
    if is_openai_url(url):
        return OpenAIChatClient(url, concurrency=concurrency)
    return TritonChatClient(url, concurrency=concurrency)
