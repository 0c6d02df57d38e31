"""The two types every model call passes through, and the small protocol providers implement.

Providers only build and send one request; retries, pacing and caching wrap any provider once
(see `augment_it.calling`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property
from types import ModuleType
from typing import Any, Protocol

Message = tuple[str, str]  # (role, content): "user" or "assistant"


@dataclass(frozen=True)
class ModelRequest:
    provider: str
    model: str
    system: str | None
    messages: tuple[Message, ...]
    schema: dict[str, Any] | None = None  # JSON schema of the answer, None for plain text
    schema_name: str = "output"
    temperature: float | None = None
    max_tokens: int = 1024

    @property
    def prompt(self) -> str:
        return self.messages[0][1]

    @cached_property
    def _key(self) -> str:
        canonical = json.dumps(
            [self.provider, self.model, self.system, self.messages, self.schema, self.schema_name,
             self.temperature, self.max_tokens], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def key(self) -> str:
        """Cache/ledger key: provider, model, rendered prompt, parameters and output schema."""
        return self._key

    def repair(self, answer: str, problem: str) -> ModelRequest:
        """The same request, asking once more after an answer that did not fit the schema."""
        fix = (f"Your answer could not be used: {problem}. Reply again with only a JSON object "
               "that matches the requested fields.")
        return ModelRequest(self.provider, self.model, self.system,
                            (*self.messages, ("assistant", answer), ("user", fix)),
                            self.schema, self.schema_name, self.temperature, self.max_tokens)


@dataclass(frozen=True)
class ModelReply:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached: bool = field(default=False, compare=False)


class ProviderError(Exception):
    """A call that failed; `retryable` says whether trying again may succeed."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


def answer_object(data: object, provider: str) -> dict[str, Any]:
    """The answer's JSON object, as the SDKs' post(cast_to=object) returns it.

    Providers read the documented wire fields from it themselves: building the SDK's typed
    answer model costs about 0.7 ms of event-loop time per call, a third of the client's work."""
    if not isinstance(data, dict):
        raise ProviderError(f"{provider}: the answer is not a JSON object: {str(data)[:200]!r}",
                            retryable=True)
    return data


class MissingKeyError(Exception):
    """No API key for a provider; the message says how to set one."""


class Provider(Protocol):
    name: str

    async def send(self, request: ModelRequest) -> ModelReply: ...

    async def close(self) -> None: ...


def provider_error(exc: Exception, sdk: ModuleType, provider: str) -> ProviderError | None:
    """Map an official SDK's exception (openai, anthropic and groq share the same shapes)."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(f"{provider}: request timed out", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(f"{provider}: connection failed: {exc}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        retryable = status in (408, 409, 425, 429) or status >= 500
        detail = _error_message(exc)
        return ProviderError(f"{provider}: HTTP {status}: {detail}", retryable=retryable,
                             retry_after=retry_after(exc.response.headers), status=status)
    return None


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds or an HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from datetime import UTC, datetime

            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None
