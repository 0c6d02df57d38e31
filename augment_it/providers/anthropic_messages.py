"""Anthropic's Messages API through the official SDK.

Structured answers use a forced tool call whose input schema is the template's output schema:
the documented way to get JSON that fits a schema from Claude. A system prompt shared by every
record is marked for Anthropic's prompt cache, which, unlike OpenAI's, is used only when asked.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2

from augment_it.providers.base import (
    ModelReply,
    ModelRequest,
    answer_object,
    incomplete_reason,
    provider_error,
    token_count,
    token_part,
)

API_VERSION = "2023-06-01"  # the Messages API version whose request and answer shapes this code reads


class AnthropicMessages:
    name = "anthropic"
    # A cache write costs 1.25x input; no model caches a prefix under 1,024 tokens (some need more).
    cache_write_min_tokens = 1024

    def __init__(self, api_key: str, base_url: str | None = None, timeout: float = 60.0,
                 connections: int = 100) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = timeout
        self._connections = connections
        self._client: anthropic.AsyncAnthropic | None = None

    @property
    def client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            # See openai_chat: the aiohttp transport, one kept-alive connection per slot.
            limits = httpx2.Limits(max_connections=self._connections,
                                   max_keepalive_connections=self._connections)
            # The documented headers are x-api-key and anthropic-version; this SDK release sends
            # the key as a Bearer token and a newer version date instead.
            headers = {"X-Api-Key": self._api_key, "Authorization": anthropic.omit,
                       "anthropic-version": API_VERSION}
            self._client = anthropic.AsyncAnthropic(
                api_key=self._api_key, base_url=self._base_url, timeout=self._timeout, max_retries=0,
                default_headers=headers, http_client=anthropic.DefaultAioHttpClient(limits=limits))
        return self._client

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": role, "content": content} for role, content in request.messages],
        }
        if request.system and request.cache_system:
            # A cache breakpoint after the shared system prompt: later calls read it at a tenth of
            # the input price (a prompt under the model's minimum is simply not cached).
            arguments["system"] = [{"type": "text", "text": request.system,
                                    "cache_control": {"type": "ephemeral"}}]
        elif request.system:
            arguments["system"] = request.system
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.top_p is not None:
            arguments["top_p"] = request.top_p
        if request.schema is not None:
            arguments["tools"] = [{"name": request.schema_name,
                                   "description": "Record the requested fields.",
                                   "input_schema": request.schema}]
            arguments["tool_choice"] = {"type": "tool", "name": request.schema_name}
        return arguments

    async def send(self, request: ModelRequest) -> ModelReply:
        body = self._arguments(request)
        try:
            # post() rather than messages.create(): see openai_chat for why.
            data = await self.client.post("/v1/messages", body=body, cast_to=object)
        except (anthropic.APIError, ValueError) as exc:
            raise provider_error(exc, anthropic, self.name) from exc
        message = answer_object(data, self.name, "content")
        text = ""
        for block in message["content"]:
            if block.get("type") == "tool_use":
                text = json.dumps(block.get("input"), ensure_ascii=False)
                break
            if block.get("type") == "text":
                text += block.get("text") or ""
        usage = message.get("usage")
        # Anthropic's input_tokens leaves out the tokens read from or written to its prompt cache.
        read = token_part(usage, "cache_read_input_tokens")
        written = token_part(usage, "cache_creation_input_tokens")
        uncached = token_count(usage, "input_tokens")
        return ModelReply(text=text, input_tokens=None if uncached is None else uncached + read + written,
                          output_tokens=token_count(usage, "output_tokens"),
                          cached_input_tokens=read, cache_write_tokens=written,
                          incomplete=incomplete_reason(message.get("stop_reason"), request))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
