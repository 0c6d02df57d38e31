"""Groq chat completions through the official SDK (OpenAI's request and answer shapes)."""

from __future__ import annotations

from typing import Any

import groq
import httpx

from augment_it.providers.openai_chat import OpenAIChat


class GroqChat(OpenAIChat):
    name = "groq"
    sdk = groq
    strict_schema = False  # Groq documents strict mode for some models only
    path = "/openai/v1/chat/completions"  # the SDK's base URL is the host alone

    def _make_client(self) -> Any:
        limits = httpx.Limits(max_connections=self._connections,
                              max_keepalive_connections=self._connections)
        return groq.AsyncGroq(api_key=self._api_key, base_url=self._base_url, timeout=self._timeout,
                              max_retries=0, http_client=groq.DefaultAioHttpClient(limits=limits))
