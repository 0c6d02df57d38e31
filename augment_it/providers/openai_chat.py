"""OpenAI chat completions through the official SDK; also any OpenAI-compatible endpoint."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import httpx2
import openai

from augment_it.providers.base import (
    ModelReply,
    ModelRequest,
    answer_object,
    incomplete_reason,
    provider_error,
    token_count,
    token_part,
)


class OpenAIChat:
    name = "openai"
    cache_write_min_tokens: int | None = None  # OpenAI and Groq write their caches for nothing
    sdk: ModuleType = openai
    strict_schema = True
    path = "/chat/completions"  # relative to the base URL, which ends in /v1

    def __init__(self, api_key: str, base_url: str | None = None, timeout: float = 60.0,
                 connections: int = 100) -> None:
        self._api_key = api_key
        self._base_url = base_url  # None lets the SDK read its own *_BASE_URL variable
        self._timeout = timeout
        self._connections = connections
        self._client: Any = None

    def _make_client(self) -> Any:
        # Retries belong to the shared calling layer, which honours retry-after and keeps counts.
        # The SDK's aiohttp transport costs about half the CPU per request of its default httpx
        # pool, which slows down as connections grow; one connection per slot, all kept alive.
        limits = httpx2.Limits(max_connections=self._connections,
                               max_keepalive_connections=self._connections)
        return openai.AsyncOpenAI(api_key=self._api_key, base_url=self._base_url,
                                  timeout=self._timeout, max_retries=0,
                                  http_client=openai.DefaultAioHttpClient(limits=limits))

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": role, "content": content} for role, content in request.messages]
        arguments: dict[str, Any] = {"model": request.model, "messages": messages,
                                     "max_completion_tokens": request.max_tokens}
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.top_p is not None:
            arguments["top_p"] = request.top_p
        if request.schema is not None:
            arguments["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.schema,
                                "strict": self.strict_schema},
            }
        return arguments

    async def send(self, request: ModelRequest) -> ModelReply:
        body = self._arguments(request)
        try:
            # The SDK's generic post() keeps its auth, error types and typed answer, but skips
            # create()'s per-call walk of the parameters against their TypedDicts, which cost
            # 40% of the client's CPU per request here (it re-walks the whole JSON schema).
            data = await self.client.post(self.path, body=body, cast_to=object)
        except (self.sdk.APIError, ValueError) as exc:
            raise provider_error(exc, self.sdk, self.name) from exc
        answer = answer_object(data, self.name, "choices")
        choice = (answer["choices"] or [{}])[0] or {}
        message = choice.get("message") or {}
        usage = answer.get("usage")
        return ModelReply(text=_text(message.get("content")),
                          input_tokens=token_count(usage, "prompt_tokens"),
                          output_tokens=token_count(usage, "completion_tokens"),
                          # prompt_tokens includes these; OpenAI and Groq bill them at a discount.
                          cached_input_tokens=token_part(usage, "prompt_tokens_details", "cached_tokens"),
                          incomplete=incomplete_reason(choice.get("finish_reason"), request,
                                                       message.get("refusal")))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _text(content: object) -> str:
    """The answer's text: a string (or null), or a list of typed parts, as some OpenAI-compatible
    servers send it (Mistral's: text beside `thinking` parts)."""
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content
                       if isinstance(part, dict) and part.get("type") == "text")
    return content if isinstance(content, str) else ""
