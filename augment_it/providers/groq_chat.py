"""Groq chat completions through the official SDK (OpenAI's request and answer shapes)."""

from __future__ import annotations

import json
from typing import Any

import groq
import httpx

from augment_it.providers.base import ModelReply, ModelRequest, ProviderError
from augment_it.providers.openai_chat import OpenAIChat


class GroqChat(OpenAIChat):
    name = "groq"
    sdk = groq
    strict_schema = False  # Groq documents strict mode for some models only
    path = "/openai/v1/chat/completions"  # the SDK's base URL is the host alone

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._json_mode_models: set[str] = set()  # models that refused response_format json_schema

    def _make_client(self) -> Any:
        limits = httpx.Limits(max_connections=self._connections,
                              max_keepalive_connections=self._connections)
        return groq.AsyncGroq(api_key=self._api_key, base_url=self._base_url, timeout=self._timeout,
                              max_retries=0, http_client=groq.DefaultAioHttpClient(limits=limits))

    def _arguments(self, request: ModelRequest) -> dict[str, Any]:
        arguments = super()._arguments(request)
        if request.schema is not None and request.model in self._json_mode_models:
            # JSON mode holds the model to JSON but not to a schema, so the prompt carries it;
            # the answer is still validated and repaired once.
            arguments["response_format"] = {"type": "json_object"}
            schema = f"Reply with a JSON object that fits this JSON schema: {json.dumps(request.schema)}"
            messages = arguments["messages"]
            if messages[0]["role"] == "system":
                messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{schema}"}
            else:
                messages.insert(0, {"role": "system", "content": schema})
        return arguments

    async def send(self, request: ModelRequest) -> ModelReply:
        sent_in_json_mode = request.model in self._json_mode_models
        try:
            return await super().send(request)
        except ProviderError as exc:
            # Groq documents json_schema for some models only; the others answer 400 and take
            # JSON mode instead.
            if (exc.status != 400 or request.schema is None or "json_schema" not in str(exc)
                    or sent_in_json_mode):
                raise
            self._json_mode_models.add(request.model)
            return await super().send(request)
