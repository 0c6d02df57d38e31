"""The two types every model call passes through, and the small protocol providers implement.

Providers only build and send one request; retries, pacing and caching wrap any provider once
(see `augment_it.calling`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import cached_property
from types import ModuleType
from typing import Any, Protocol

Message = tuple[str, str]  # (role, content): "user" or "assistant"
CHARACTERS_PER_TOKEN = 4.0  # English text in the providers' tokenizers, roughly


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
    top_p: float | None = None
    # The system prompt is shared by many requests: ask the provider to cache it where caching
    # is asked for (Anthropic); the answer does not depend on it, so neither does the key.
    cache_system: bool = field(default=False, compare=False)

    @cached_property
    def _key(self) -> str:
        parameters = [self.provider, self.model, self.system, self.messages, self.schema, self.schema_name,
                      self.temperature, self.max_tokens]
        if self.top_p is not None:  # appended only when set: the keys of earlier answers stay valid
            parameters.append(self.top_p)
        canonical = json.dumps(parameters, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def key(self) -> str:
        """Cache/ledger key: provider, model, rendered prompt, parameters and output schema."""
        return self._key

    def characters(self) -> int:
        """The prompt's size in characters: the system prompt, every turn and the answer's schema
        (which providers count as input too). Tokens are estimated from it: no offline tokenizer
        serves every provider."""
        schema = len(json.dumps(self.schema)) if self.schema else 0
        return len(self.system or "") + sum(len(text) for _, text in self.messages) + schema

    def repair(self, answer: str, problem: str) -> ModelRequest:
        """The same request, asking once more after an answer that could not be used."""
        wanted = "only a JSON object that matches the requested fields" if self.schema else "your answer"
        return self._answered(answer, f"Your answer could not be used: {problem}. Reply again with {wanted}.")

    def after_rejection(self, answer: str, comment: str) -> ModelRequest:
        """The same request, asking again after a reviewer rejected ANSWER, saying COMMENT."""
        said = f' and said: "{comment}"' if comment else ""
        return self._answered(answer, f"A reviewer rejected this answer{said}. Answer again, correcting it.")

    def _answered(self, answer: str, follow_up: str) -> ModelRequest:
        # Anthropic refuses an empty assistant turn before the last message.
        return replace(self, messages=(*self.messages, ("assistant", answer or "(no answer)"),
                                       ("user", follow_up)))


@dataclass(frozen=True)
class ModelReply:
    text: str
    input_tokens: int | None = None  # every input token, cached or not; None: the provider did not say
    output_tokens: int | None = None
    # Parts of input_tokens that the provider's prompt cache priced apart: read from it (cheaper)
    # and, for Anthropic, written to it (dearer).
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    cached: bool = field(default=False, compare=False)
    incomplete: str | None = None  # why the answer is not whole (cut off, refused, filtered)


# What the providers' stop reasons mean for a record; the others ("stop", "end_turn", "tool_use")
# end a whole answer.
_CUT_OFF = "the answer was cut off at max_tokens ({max_tokens}); raise max_tokens in the template"
_UNUSABLE_STOPS = {
    "length": _CUT_OFF,  # OpenAI, Groq
    "max_tokens": _CUT_OFF,  # Anthropic
    # Anthropic, newer models: the answer filled what the context window had left.
    "model_context_window_exceeded": "the answer was cut off at the end of the model's context window; "
                                     "shorten the prompt",
    "content_filter": "the provider's content filter withheld the answer",
    "refusal": "the model refused to answer",
}


def incomplete_reason(stop: object, request: ModelRequest, refusal: object = None) -> str | None:
    """Why an answer with this stop reason (or refusal text) cannot be used, or None."""
    if refusal:
        return f"the model refused to answer: {str(refusal)[:200]}"
    template = _UNUSABLE_STOPS.get(stop) if isinstance(stop, str) else None
    return template.format(max_tokens=request.max_tokens) if template else None


def token_count(usage: object, name: str) -> int | None:
    """One count from an answer's `usage` object, or None when the provider sent none.

    OpenAI-compatible servers may leave `usage` out or its counts null; reading that as 0 would
    make an answer of unknown size look known and free."""
    value = usage.get(name) if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def token_part(usage: object, *path: str) -> int:
    """A breakdown count (e.g. cached input tokens) under `usage`; 0 where the provider sent none,
    as older servers and OpenAI-compatible ones do: the whole count is then priced as uncached."""
    for name in path[:-1]:
        usage = usage.get(name) if isinstance(usage, dict) else None
    return token_count(usage, path[-1]) or 0


class ProviderError(Exception):
    """A call that failed; `retryable` says whether trying again may succeed, `run_wide` whether
    every other call of the run would get the same answer, whatever its record."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None,
                 status: int | None = None, run_wide: bool = False, unreachable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.run_wide = run_wide
        self.unreachable = unreachable  # no connection (refused, unknown host): not a slow answer


def answer_object(data: object, provider: str, answer_field: str) -> dict[str, Any]:
    """The answer's JSON object, as the SDKs' post(cast_to=object) returns it, holding ANSWER_FIELD
    (`choices`, `content`).

    Providers read the documented wire fields from it themselves: building the SDK's typed
    answer model costs about 0.7 ms of event-loop time per call, a third of the client's work.
    Some OpenAI-compatible gateways answer 200 with an error object when the model behind them
    failed: that is a failed call to retry, not an empty answer to keep."""
    if isinstance(data, str):  # the SDKs leave a body without a JSON content type as text
        with contextlib.suppress(ValueError):
            data = json.loads(data)
    if not isinstance(data, dict):
        raise ProviderError(f"{provider}: the answer is not a JSON object: {str(data)[:200]!r}",
                            retryable=True)
    if not isinstance(data.get(answer_field), list):
        error = data.get("error")
        if isinstance(error, dict):
            error = error.get("message") or error
        what = f"an error: {str(error)[:200]}" if error else f"no {answer_field}: {str(data)[:200]!r}"
        raise ProviderError(f"{provider}: the answer (HTTP 200) has {what}", retryable=True)
    return data


class MissingKeyError(Exception):
    """No API key for a provider; the message says how to set one."""


class Provider(Protocol):
    name: str
    # The shortest marked prefix whose prompt-cache write the provider bills, or None where
    # writing its cache costs nothing extra (see ModelCaller).
    cache_write_min_tokens: int | None

    async def send(self, request: ModelRequest) -> ModelReply: ...

    async def close(self) -> None: ...


# The transport errors (httpx's, or httpx2's in newer SDKs: matched by name) of a connection never made.
NO_CONNECTION = frozenset({"ConnectError", "ConnectTimeout"})


def provider_error(exc: Exception, sdk: ModuleType, provider: str) -> ProviderError:
    """Map an official SDK's exception (openai, anthropic and groq share the same shapes)."""
    if isinstance(exc, sdk.APIConnectionError) and type(exc.__cause__).__name__ in NO_CONNECTION:
        # No connection was made (refused, unknown host; the aiohttp transport reports even a refusal
        # as ConnectTimeout), where the SDK says only "Connection error." or "Request timed out.":
        # a user with a wrong OPENAI_BASE_URL needs the address and the reason.
        return ProviderError(f"{provider}: cannot connect to {_endpoint(exc.request.url)}: {exc.__cause__}",
                             retryable=True, unreachable=True)
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(f"{provider}: request timed out", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(f"{provider}: connection failed: {exc}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        # An exhausted quota or billing limit also comes as 429, but waiting does not lift it.
        out_of_quota = _out_of_quota(exc)
        retryable = (status in (408, 409, 425, 429) or status >= 500) and not out_of_quota
        wait = retry_after(exc.response.headers) if retryable else None
        if wait is None and status == 429:
            wait = rate_limit_reset(exc.response.headers)
        # A base URL missing its /v1 (or with one too many) is answered 404 with a bare "Not Found".
        where = f" from {_endpoint(exc.response.request.url)}" if status == 404 else ""
        return ProviderError(f"{provider}: HTTP {status}{where}: {_error_message(exc)}", retryable=retryable,
                             retry_after=wait, status=status,
                             # A refused key, an unknown model or endpoint, an empty account, a
                             # model the key may not use.
                             run_wide=status in (401, 404) or out_of_quota or _no_access(exc))
    if isinstance(exc, ValueError):  # a 200 whose JSON body is cut short or empty
        return ProviderError(f"{provider}: the answer is not valid JSON: {exc}", retryable=True)
    return ProviderError(f"{provider}: {exc}", retryable=True)  # e.g. an answer of unexpected shape


def _endpoint(url: Any) -> str:
    """The URL called, without its query or credentials (httpx.URL)."""
    port = f":{url.port}" if url.port else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


def _out_of_quota(exc: Any) -> bool:
    """Whether the account has no credit left: OpenAI's 429 insufficient_quota, or Anthropic's 400
    whose only mark is its message ("Your credit balance is too low to access the Anthropic API")."""
    error = _error_object(exc)
    if error is None:
        return False
    return "insufficient_quota" in (error.get("code"), error.get("type")) or \
        "credit balance is too low" in str(error.get("message", "")).lower()


# A 403 is run-wide only when the provider itself says so: a firewall in front of a gateway answers
# 403 (in HTML) to some prompts only.
NO_ACCESS = {"permission_error", "model_not_found", "unsupported_country_region_territory"}


def _no_access(exc: Any) -> bool:
    """Whether a 403 is the provider refusing this key the model or the API (Anthropic's
    permission_error, OpenAI's model_not_found for a project without access, or its region block)."""
    error = _error_object(exc)
    return exc.status_code == 403 and error is not None and \
        bool(NO_ACCESS & {error.get("type"), error.get("code")})


def _error_object(exc: Any) -> dict[str, Any] | None:
    """The provider's JSON error object ({"error": {...}} or the bare object), if it sent one."""
    body = getattr(exc, "body", None)
    error = body.get("error", body) if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def _error_message(exc: Any) -> str:
    error = _error_object(exc)
    if error is not None and error.get("message"):
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
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def rate_limit_reset(headers: Any) -> float | None:
    """Seconds until an exhausted rate limit resets, when a 429 carries no retry-after.

    OpenAI and Groq send durations (`x-ratelimit-reset-requests: 6m0s`, `20ms`), Anthropic
    RFC 3339 times (`anthropic-ratelimit-tokens-reset`); limits with nothing remaining count first.
    """
    waits: dict[str, float] = {}
    for name, value in headers.items():
        name = name.lower()
        if name.startswith("x-ratelimit-reset-"):
            parts = _GO_DURATION.findall(value)
            if parts:
                waits[name.removeprefix("x-ratelimit-reset-")] = sum(
                    float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
        elif name.startswith("anthropic-ratelimit-") and name.endswith("-reset"):
            try:
                reset = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            kind = name.removeprefix("anthropic-ratelimit-").removesuffix("-reset")
            reset = reset if reset.tzinfo else reset.replace(tzinfo=UTC)
            waits[kind] = max(0.0, (reset - datetime.now(UTC)).total_seconds())
    if not waits:
        return None
    exhausted = [wait for kind, wait in waits.items() if _remaining(headers, kind) == "0"]
    return max(exhausted or waits.values())


def _remaining(headers: Any, kind: str) -> str | None:
    return (headers.get(f"x-ratelimit-remaining-{kind}")
            or headers.get(f"anthropic-ratelimit-{kind}-remaining"))
