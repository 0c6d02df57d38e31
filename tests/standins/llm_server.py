"""A local HTTP stand-in for OpenAI, Groq and Anthropic, reached through their official SDKs.

It speaks each provider's documented wire format, so the project's code runs unchanged against it:

    with StandinServer(StandinConfig(latency=0.05, p429=0.1, seed=7)) as server:
        client = openai.AsyncOpenAI(api_key="test", base_url=server.openai_base_url)
        groq_client = groq.AsyncGroq(api_key="test", base_url=server.groq_base_url)
        claude = anthropic.AsyncAnthropic(api_key="test", base_url=server.anthropic_base_url)

Endpoints: ``POST /v1/chat/completions`` (OpenAI), ``POST /openai/v1/chat/completions`` (Groq),
``POST /v1/messages`` (Anthropic), plus ``GET /stats`` and ``POST /reset`` for benchmarks.

Answers are deterministic functions of the last user message: structured requests (OpenAI/Groq
``response_format`` json_schema or json_object, Anthropic forced ``tool_choice``) get JSON that
fits the schema; others get ``"Answer to: <first 80 chars>"``. ``server.script(match, reply)``
overrides the answer for prompts containing ``match``.

Faults (429, 500, non-JSON answers, hangs, answers without token usage), latency and a
requests-per-minute cap come from a `StandinConfig`; ``server.config`` is read on every request,
so tests may change its fields at any time (``server.configure(...)`` does the same and also
reseeds the random generator). A temperature or top_p outside an API's documented range is
answered 400.

Run in its own process for benchmarks (stats JSON printed on SIGTERM/SIGINT):

    python -m tests.standins.llm_server --port 8765 --latency 0.5 --jitter 0.1 --rpm 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from types import TracebackType
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.standins.background import listening_socket

try:  # orjson comes with Prefect; it is only a speed-up
    import orjson

    def _dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    _loads = json.loads

try:
    import httptools  # noqa: F401

    _HTTP = "httptools"
except ImportError:  # pragma: no cover - depends on the environment
    _HTTP = "h11"

OPENAI = "openai"
GROQ = "groq"
ANTHROPIC = "anthropic"

BAD_JSON_REPLY = "Sorry, I cannot do that."
# Groq documents structured outputs (json_schema) for these models only; others take JSON mode.
GROQ_JSON_SCHEMA_MODELS = frozenset({
    "openai/gpt-oss-20b", "openai/gpt-oss-120b", "moonshotai/kimi-k2-instruct",
    "moonshotai/kimi-k2-instruct-0905", "meta-llama/llama-4-maverick-17b-128e-instruct",
    "meta-llama/llama-4-scout-17b-16e-instruct"})
# The documented range of each sampling parameter each API accepts; outside it the request is
# answered 400.
SAMPLING_RANGES = {OPENAI: {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)},
                   GROQ: {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)},
                   ANTHROPIC: {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0)}}
# Names and keys the APIs refuse (400) outside these patterns.
ANTHROPIC_TOOL_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
ANTHROPIC_PROPERTY_KEY = r"^[a-zA-Z0-9_.-]{1,64}$"
OPENAI_SCHEMA_NAME = r"^[a-zA-Z0-9_-]{1,64}$"
NoUsage = Literal["omitted", "null"]
REQUESTS_KEPT = 10_000
WINDOW_SECONDS = 60.0


@dataclass
class StandinConfig:
    """Latency, a rate cap and fault rates. Every field may be changed while the server runs."""

    latency: float = 0.0  # mean seconds before an answer
    jitter: float = 0.0  # uniform +/- seconds around `latency`
    rpm: int | None = None  # requests per sliding 60 s window; None = no cap
    p429: float = 0.0  # share of requests answered 429 (rate limited)
    p500: float = 0.0  # share answered 500 (server error)
    p_bad_json: float = 0.0  # share of structured requests answered with non-JSON text
    p_hang: float = 0.0  # share that sleep `hang_seconds` before answering
    p_cut_body: float = 0.0  # share of 200 answers whose JSON body is cut short (a proxy dropped it)
    # share of 200 answers whose body is an error object instead of an answer, as some
    # OpenAI-compatible gateways send when the model behind them failed
    p_error_body: float = 0.0
    out_of_quota: bool = False  # every request is answered 429 insufficient_quota (billing, not rate)
    # every request is answered 403 as when the key's project or workspace may not use the model
    no_model_access: bool = False
    p_no_usage: float = 0.0  # share of 200 answers without token counts (OpenAI-compatible servers)
    no_usage_as: NoUsage = "omitted"  # how: no `usage` object, or one whose counts are null
    # A system prompt of at least this many tokens is cached once sent, and reported as such in
    # later answers' usage, as the providers' prompt caches do with a shared prefix; None: off.
    prompt_cache_min_tokens: int | None = None
    hang_seconds: float = 30.0
    retry_after: float = 1.0  # seconds advertised by injected 429s (retry-after-ms exact)
    api_key: str | None = None  # the only key accepted (any other is answered 401); None: any
    # Chat answers whose `content` is a list of typed parts, as some OpenAI-compatible servers
    # (Mistral's, for one) send it, instead of a string.
    content_as_parts: bool = False
    seed: int | None = 0  # seeds the fault generator; applied at start, reset() and configure()


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: four tokens for every three words, at least one."""
    return max(1, round(len(text.split()) * 4 / 3))


def _cut_to(text: str, max_tokens: Any, cut: str, whole: str) -> tuple[str, str]:
    """The text within `max_tokens` (by `estimate_tokens`), and the stop reason that says which."""
    if not isinstance(max_tokens, int) or estimate_tokens(text) <= max_tokens:
        return text, whole
    return " ".join(text.split()[:max(1, max_tokens * 3 // 4)]), cut


# --------------------------------------------------------------------------- message parsing


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts/blocks with text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif part.get("type") == "tool_result":
                    parts.append(_text_of(part.get("content")))
        return "\n".join(p for p in parts if p)
    return ""


def last_user_message(messages: Any) -> str:
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text_of(message.get("content"))
    return ""


def _all_text(body: dict[str, Any]) -> str:
    texts = [_text_of(body.get("system"))]
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            texts.append(_text_of(message.get("content")))
    return "\n".join(texts)


def _schema_in_text(text: str) -> dict[str, Any] | None:
    """A JSON schema written into a prompt (for json_object mode), if there is one."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    tries = 0
    while start != -1 and tries < 50:
        tries += 1
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            if isinstance(value.get("properties"), dict):
                return value
            for nested in ("schema", "json_schema", "input_schema"):
                inner = value.get(nested)
                if isinstance(inner, dict) and isinstance(inner.get("properties"), dict):
                    return inner
        start = text.find("{", end)
    return None


# --------------------------------------------------------------------------- schema values


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 20:
        seen += 1
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return {}
        target: Any = root
        for piece in ref.lstrip("#").strip("/").split("/"):
            if not piece:
                continue
            piece = piece.replace("~1", "/").replace("~0", "~")
            target = target.get(piece) if isinstance(target, dict) else None
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**(target if isinstance(target, dict) else {}), **rest}
    return schema if isinstance(schema, dict) else {}


def _merge_all_of(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema.get("allOf") or []:
        part = _resolve(part, root)
        for key, value in part.items():
            if key == "properties" and isinstance(value, dict):
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required" and isinstance(value, list):
                merged["required"] = [*merged.get("required", []), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _clamp(value: float, schema: dict[str, Any], step: float) -> float:
    if isinstance(schema.get("minimum"), int | float):
        value = max(value, schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        value = max(value, schema["exclusiveMinimum"] + step)
    if isinstance(schema.get("maximum"), int | float):
        value = min(value, schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        value = min(value, schema["exclusiveMaximum"] - step)
    return value


_FORMATS = {
    "date": "2024-01-01",
    "date-time": "2024-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "email": "someone@example.com",
    "uri": "https://example.com/standin",
    "url": "https://example.com/standin",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def _string_value(schema: dict[str, Any], field: str, prompt: str) -> str:
    fmt = schema.get("format")
    if fmt == "uuid":
        text = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{field}:{prompt}"))
    elif fmt in _FORMATS:
        text = _FORMATS[fmt]
    else:
        text = f"{field} of {prompt[:40]}"
        if isinstance(schema.get("maxLength"), int):
            text = text[: schema["maxLength"]]
        if isinstance(schema.get("minLength"), int) and len(text) < schema["minLength"]:
            text = text.ljust(schema["minLength"], ".")
    return text


def schema_value(schema: Any, field: str, prompt: str, root: dict[str, Any] | None = None,
                 depth: int = 0) -> Any:
    """A deterministic value that fits `schema`, made from `field` and the user's `prompt`.

    string -> "<field> of <first 40 chars of prompt>", integer -> len(prompt) % 97 + 1,
    number -> that + 0.5, boolean -> len(prompt) is even, array -> 2 items, object -> every
    property; $ref, allOf, anyOf/oneOf (first non-null choice), enum, const, formats, bounds and
    nullable types are honoured.
    """
    root = root if root is not None else (schema if isinstance(schema, dict) else {})
    schema = _resolve(schema, root)
    if depth > 16:
        return None
    if "allOf" in schema:
        schema = _merge_all_of(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][len(prompt) % len(schema["enum"])]
    for key in ("anyOf", "oneOf"):
        choices = schema.get(key)
        if isinstance(choices, list) and choices:
            resolved = [_resolve(c, root) for c in choices]
            pick = next((c for c in resolved if c.get("type") != "null"), resolved[0])
            rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
            return schema_value({**rest, **pick}, field, prompt, root, depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema or "prefixItems" in schema:
            kind = "array"
        else:
            kind = "string"

    number = len(prompt) % 97 + 1
    if kind == "object":
        properties = schema.get("properties")
        if isinstance(properties, dict):
            return {name: schema_value(sub, name, prompt, root, depth + 1)
                    for name, sub in properties.items()}
        return {}
    if kind == "array":
        count = 2
        if isinstance(schema.get("minItems"), int):
            count = max(count, schema["minItems"])
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else []
        items_schema = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        items = []
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items_schema
            items.append(schema_value(sub, field, prompt, root, depth + 1))
        if schema.get("uniqueItems"):
            items = _make_unique(items)
        return items
    if kind == "integer":
        return int(_clamp(number, schema, 1))
    if kind == "number":
        return float(_clamp(number + 0.5, schema, 0.5))
    if kind == "boolean":
        return len(prompt) % 2 == 0
    if kind == "null":
        return None
    return _string_value(schema, field, prompt)


def _make_unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for index, item in enumerate(items):
        candidate = item
        if candidate in out:
            if isinstance(item, str):
                candidate = f"{item} ({index + 1})"
            elif isinstance(item, bool):
                candidate = not item
            elif isinstance(item, int | float):
                candidate = item + index
        out.append(candidate)
    return out


# --------------------------------------------------------------------------- error bodies


def _openai_error(message: str, type_: str, code: str | None = None,
                  param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _anthropic_error(type_: str, message: str, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message},
            "request_id": request_id}


class _Reject(Exception):
    """A request refused before any answer (400/401/404): status and provider error type."""

    def __init__(self, status: int, type_: str, message: str, code: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param


def _resolve_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class _Script:
    match: str
    reply: str
    times: int | None


# --------------------------------------------------------------------------- the server


class StandinServer:
    """The stand-in: a Starlette app served by uvicorn in a background thread (or the foreground).

    Thread-safe statistics: `total_requests`, `status_counts`, `rate_limited`, `calls_by_prompt`
    (Counter of (kind, last user message) -> 200 answers), `duplicates()`, `requests` (the last
    10,000 requests: path, kind, headers, body, status), `stats()` and `reset()`.
    """

    def __init__(self, config: StandinConfig | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.config = config if config is not None else StandinConfig()
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._scripts: list[_Script] = []
        self._ids = 0
        self._reset_stats()
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._openai, methods=["POST"]),
            Route("/openai/v1/chat/completions", self._groq, methods=["POST"]),
            Route("/v1/messages", self._anthropic, methods=["POST"]),
            Route("/stats", self._stats_endpoint, methods=["GET"]),
            Route("/reset", self._reset_endpoint, methods=["POST"]),
            Route("/timeline", self._timeline_endpoint, methods=["GET"]),
            Route("/{path:path}", self._not_found,
                  methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        ])
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sleepers: set[asyncio.Future[None]] = set()
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._socket is None and self.port == 0:
            raise RuntimeError("the stand-in is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def groq_base_url(self) -> str:
        return self.url  # the groq SDK adds /openai/v1/...

    @property
    def anthropic_base_url(self) -> str:
        return self.url  # the anthropic SDK adds /v1/messages

    def _uvicorn_config(self) -> uvicorn.Config:
        return uvicorn.Config(self.app, loop="asyncio", http=_HTTP, log_level="warning",
                              access_log=False, lifespan="off", timeout_graceful_shutdown=1,
                              backlog=4096, timeout_keep_alive=30)

    def _bind(self) -> socket.socket:
        sock = listening_socket(self.host, self.port, backlog=4096)
        sock.set_inheritable(True)
        self.port = sock.getsockname()[1]
        self._socket = sock
        return sock

    def start(self, timeout: float = 10.0) -> StandinServer:
        """Serve in a background thread; returns once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("the stand-in is already running")
        sock = self._bind()
        self._server = uvicorn.Server(self._uvicorn_config())
        self._error = None
        self._stopping = False

        def run() -> None:
            try:
                assert self._server is not None
                self._server.run(sockets=[sock])
            except BaseException as exc:  # reported by start()
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"llm-standin-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the LLM stand-in did not start: {self._error!r}")
            time.sleep(0.005)
        with socket.create_connection((self.host, self.port), timeout=timeout):
            pass
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving; requests still waiting (latency or a hang) are answered 503 at once."""
        self._stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wake_sleepers)
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(timeout)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._thread = None
        self._server = None
        self._socket = None
        self._loop = None

    def _wake_sleepers(self) -> None:
        for future in list(self._sleepers):
            if not future.done():
                future.set_result(None)

    async def _sleep(self, delay: float) -> None:
        """asyncio.sleep that stop() can cut short."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        future: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(delay, _resolve_future, future)
        self._sleepers.add(future)
        try:
            await future
        finally:
            handle.cancel()
            self._sleepers.discard(future)

    def __enter__(self) -> StandinServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration

    def configure(self, **changes: Any) -> None:
        """Change config fields (e.g. ``p429=0.5``); also reseeds the fault generator."""
        known = {f.name for f in fields(StandinConfig)}
        unknown = set(changes) - known
        if unknown:
            raise TypeError(f"unknown StandinConfig fields: {sorted(unknown)}")
        with self._lock:
            for name, value in changes.items():  # in place: callers may hold `config`
                setattr(self.config, name, value)
            self._rng = random.Random(self.config.seed)

    def script(self, match: str, reply: str, times: int | None = None) -> None:
        """Answer `reply` verbatim when the last user message contains `match` (`times` = None:
        always). For Anthropic with a forced tool the reply goes in a text block, not tool_use.
        """
        with self._lock:
            self._scripts.append(_Script(match, reply, times))

    def clear_scripts(self) -> None:
        with self._lock:
            self._scripts.clear()

    # ------------------------------------------------------------------ statistics

    def _reset_stats(self) -> None:
        self._total = 0
        self._status: Counter[int] = Counter()
        self._kinds: Counter[str] = Counter()
        self._calls: Counter[tuple[str, str]] = Counter()
        self._first_answered: dict[tuple[str, str], float] = {}  # time.monotonic() of each prompt's first 200
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUESTS_KEPT)
        self._window: deque[float] = deque()
        # (arrived, answered, status) per request on CLOCK_MONOTONIC, which other processes on
        # this machine share: a benchmark lines it up with its own clock to see idle slots.
        self._timeline: deque[tuple[float, float, int]] = deque(maxlen=REQUESTS_KEPT * 20)
        self._started_at = time.monotonic()
        self._cached_prompts: set[str] = set()

    def reset(self) -> None:
        """Forget all statistics and the rate window, and reseed the fault generator."""
        with self._lock:
            self._reset_stats()
            self._rng = random.Random(self.config.seed)

    @property
    def total_requests(self) -> int:
        with self._lock:
            return self._total

    @property
    def status_counts(self) -> Counter[int]:
        with self._lock:
            return Counter(self._status)

    @property
    def rate_limited(self) -> int:
        """Requests answered 429 (rpm cap or injected)."""
        with self._lock:
            return self._status[429]

    @property
    def calls_by_prompt(self) -> Counter[tuple[str, str]]:
        """(kind, whole conversation text) -> number of 200 answers; kind is openai, groq or anthropic."""
        with self._lock:
            return Counter(self._calls)

    @property
    def timeline(self) -> list[tuple[float, float, int]]:
        """(arrived, answered, status) of the last 200,000 requests, in time.monotonic() seconds."""
        with self._lock:
            return list(self._timeline)

    def duplicates(self) -> int:
        """Successful answers for a prompt beyond its first."""
        with self._lock:
            return sum(n - 1 for n in self._calls.values() if n > 1)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The last 10,000 requests: {"path", "kind", "headers", "body", "status"}."""
        with self._lock:
            return list(self._requests)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            answered = sum(self._calls.values())
            return {
                "total_requests": self._total,
                "by_status": {str(k): v for k, v in sorted(self._status.items())},
                "by_kind": dict(self._kinds),
                "rate_limited": self._status[429],
                "answered": answered,
                "unique_prompts": len(self._calls),
                "duplicates": sum(n - 1 for n in self._calls.values() if n > 1),
                # When the prompts answered more than once were first answered (time.monotonic(),
                # shared by the processes of this machine): a benchmark that killed its client
                # tells answers in transit at the kill from prompts re-sent for no reason.
                "duplicates_first_answered": sorted(self._first_answered[p] for p, n in self._calls.items()
                                                    if n > 1),
                "seconds": round(time.monotonic() - self._started_at, 3),
                "config": asdict(self.config),
            }

    # ------------------------------------------------------------------ request handling

    def _json(self, body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
        return Response(_dumps(body), status_code=status, headers=headers,
                        media_type="application/json")

    async def _stats_endpoint(self, request: Request) -> Response:
        return self._json(self.stats(), 200)

    async def _timeline_endpoint(self, request: Request) -> Response:
        return self._json(self.timeline, 200)

    async def _reset_endpoint(self, request: Request) -> Response:
        self.reset()
        return self._json({"reset": True}, 200)

    async def _not_found(self, request: Request) -> Response:
        with self._lock:
            self._total += 1
            self._status[404] += 1
        message = f"Invalid URL ({request.method} /{request.path_params.get('path', '')})"
        if "anthropic-version" in request.headers:
            return self._json(_anthropic_error("not_found_error", message, "req_standin"), 404)
        return self._json(_openai_error(message, "invalid_request_error"), 404)

    async def _openai(self, request: Request) -> Response:
        return await self._handle(request, OPENAI)

    async def _groq(self, request: Request) -> Response:
        return await self._handle(request, GROQ)

    async def _anthropic(self, request: Request) -> Response:
        return await self._handle(request, ANTHROPIC)

    async def _handle(self, request: Request, kind: str) -> Response:
        arrived = time.monotonic()
        raw = await request.body()
        headers = dict(request.headers)
        entry: dict[str, Any] = {"path": request.url.path, "kind": kind, "headers": headers,
                                 "body": None, "status": None}
        with self._lock:
            self._total += 1
            self._kinds[kind] += 1
            self._requests.append(entry)
            number = self._ids = self._ids + 1
        try:
            response = await self._answer(request, kind, raw, headers, entry, number)
        except _Reject as reject:
            response = self._reject(kind, reject, number)
        entry["status"] = response.status_code
        with self._lock:
            self._status[response.status_code] += 1
            self._timeline.append((arrived, time.monotonic(), response.status_code))
        return response

    def _reject(self, kind: str, reject: _Reject, number: int,
                headers: dict[str, str] | None = None) -> Response:
        if kind == ANTHROPIC:
            request_id = f"req_standin{number:013d}"
            all_headers = {"request-id": request_id, **(headers or {})}
            return self._json(_anthropic_error(reject.type, reject.message, request_id),
                              reject.status, all_headers)
        all_headers = {"x-request-id": f"req_standin{number:013d}", **(headers or {})}
        return self._json(_openai_error(reject.message, reject.type, reject.code, reject.param),
                          reject.status, all_headers)

    def _check_auth(self, kind: str, headers: dict[str, str]) -> None:
        accepted = self.config.api_key
        if kind == ANTHROPIC:
            key = headers.get("x-api-key", "").strip()
            if not key:
                raise _Reject(401, "authentication_error", "x-api-key header is required")
            if accepted is not None and key != accepted:
                raise _Reject(401, "authentication_error", "invalid x-api-key")
            return
        bearer = headers.get("authorization", "")
        if bearer[:7].lower() != "bearer " or not bearer[7:].strip():
            raise _Reject(401, "invalid_request_error",
                          "You didn't provide an API key. You need to provide your API key in an "
                          "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                          "YOUR_KEY).", code="invalid_api_key")
        key = bearer[7:].strip()
        if accepted is not None and key != accepted:
            shown = f"{key[:3]}{'*' * max(0, len(key) - 7)}{key[-4:]}"  # as OpenAI masks it
            raise _Reject(401, "invalid_request_error", f"Incorrect API key provided: {shown}. You can "
                          "find your API key at https://platform.openai.com/account/api-keys.",
                          code="invalid_api_key")

    def _validate(self, kind: str, body: Any, headers: dict[str, str]) -> None:
        bad = "invalid_request_error"
        if not isinstance(body, dict):
            raise _Reject(400, bad, "The request body must be a JSON object.")
        for name, (low, high) in SAMPLING_RANGES[kind].items():
            value = body.get(name)
            if isinstance(value, int | float) and not low <= value <= high:
                if kind == ANTHROPIC:
                    raise _Reject(400, bad, f"{name}: Input should be between {low:g} and {high:g}")
                raise _Reject(400, bad, f"Invalid '{name}': expected a value between {low:g} and "
                                        f"{high:g}, but got {value} instead.", param=name)
        if kind == ANTHROPIC:
            if body.get("temperature") is not None and body.get("top_p") is not None:
                raise _Reject(400, bad, "`temperature` and `top_p` cannot both be specified for this model. "
                                        "Please use only one.")
            if not headers.get("anthropic-version"):
                raise _Reject(400, bad, "anthropic-version: header is required")
            if not isinstance(body.get("model"), str) or not body["model"]:
                raise _Reject(400, bad, "model: Field required")
            max_tokens = body.get("max_tokens")
            if max_tokens is None:
                raise _Reject(400, bad, "max_tokens: Field required")
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
                raise _Reject(400, bad, "max_tokens: Input should be a valid positive integer")
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _Reject(400, bad, "messages: at least one message is required")
            for index, message in enumerate(messages):
                if not isinstance(message, dict) or message.get("role") not in ("user",
                                                                                "assistant"):
                    raise _Reject(400, bad, f"messages.{index}.role: Input should be 'user' or "
                                            "'assistant'")
            system = body.get("system")
            if system is not None and not isinstance(system, str | list):
                raise _Reject(400, bad, "system: Input should be a string or a list of blocks")
            for index, block in enumerate(system if isinstance(system, list) else []):
                if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(
                        block.get("text"), str):
                    raise _Reject(400, bad, f"system.{index}: Input should be a text block")
                cache = block.get("cache_control")
                if cache is not None and (not isinstance(cache, dict) or cache.get("type") != "ephemeral"):
                    raise _Reject(400, bad, f"system.{index}.cache_control.type: Input should be 'ephemeral'")
            for index, tool in enumerate(body.get("tools") or []):
                if not re.fullmatch(ANTHROPIC_TOOL_NAME, str(tool.get("name"))):
                    raise _Reject(400, bad, f"tools.{index}.custom.name: String should match pattern "
                                            f"'{ANTHROPIC_TOOL_NAME}'")
                keys = (tool.get("input_schema") or {}).get("properties") or {}
                if not all(re.fullmatch(ANTHROPIC_PROPERTY_KEY, key) for key in keys):
                    raise _Reject(400, bad, f"tools.{index}.custom.input_schema.properties: Property keys "
                                            f"should match pattern '{ANTHROPIC_PROPERTY_KEY}'")
            choice = body.get("tool_choice")
            if isinstance(choice, dict) and choice.get("type") == "tool":
                names = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
                if choice.get("name") not in names:
                    raise _Reject(400, bad, f"tool_choice: tool {choice.get('name')!r} was not "
                                            "found in tools")
            return
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise _Reject(400, bad, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _Reject(400, bad, "'messages' must contain at least one message",
                          param="messages")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise _Reject(400, bad, f"Invalid message at messages[{index}]",
                              param=f"messages[{index}]")
        response_format = body.get("response_format")
        if response_format is not None:
            fmt = response_format.get("type") if isinstance(response_format, dict) else None
            if fmt not in ("text", "json_object", "json_schema"):
                raise _Reject(400, bad, "Invalid value for 'response_format.type'",
                              param="response_format")
            if fmt == "json_schema":
                spec = response_format.get("json_schema")
                if not isinstance(spec, dict) or not spec.get("name"):
                    raise _Reject(400, bad, "Missing required parameter: "
                                            "'response_format.json_schema.name'",
                                  param="response_format.json_schema.name")
                if not re.fullmatch(OPENAI_SCHEMA_NAME, spec["name"]):
                    raise _Reject(400, bad, "Invalid 'response_format.json_schema.name': string does not "
                                            "match pattern. Expected a string that matches the pattern "
                                            f"'{OPENAI_SCHEMA_NAME}'.",
                                  param="response_format.json_schema.name")
                if kind == GROQ and body["model"] not in GROQ_JSON_SCHEMA_MODELS:
                    raise _Reject(400, bad, "This model does not support response format "
                                            "`json_schema`. See supported models at "
                                            "https://console.groq.com/docs/structured-outputs"
                                            "#supported-models")

    def _rate_check(self, config: StandinConfig) -> float | None:
        """Seconds until the rpm window has room, or None when this request is admitted."""
        now = time.monotonic()
        with self._lock:
            window = self._window
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            if config.rpm is not None and len(window) >= config.rpm:
                if not window:  # rpm == 0: never admitted
                    return WINDOW_SECONDS
                return window[0] + WINDOW_SECONDS - now
            return None

    def _admit(self) -> int:
        with self._lock:
            self._window.append(time.monotonic())
            return len(self._window)

    def _scripted(self, prompt: str) -> str | None:
        with self._lock:
            for entry in self._scripts:
                if entry.match in prompt and (entry.times is None or entry.times > 0):
                    if entry.times is not None:
                        entry.times -= 1
                    return entry.reply
        return None

    def _rate_limited(self, kind: str, wait: float, number: int, why: str) -> Response:
        wait = max(wait, 0.001)
        headers = {"retry-after": str(max(1, math.ceil(wait))),
                   "retry-after-ms": str(max(1, math.ceil(wait * 1000)))}
        if kind == ANTHROPIC:
            reject = _Reject(429, "rate_limit_error", f"This request would exceed the rate limit "
                                                      f"for your organization: {why}.")
        else:
            reject = _Reject(429, "requests", f"Rate limit reached for requests: {why}. Please "
                                              f"try again in {wait:.3f}s.",
                             code="rate_limit_exceeded")
        return self._reject(kind, reject, number, headers)

    async def _answer(self, request: Request, kind: str, raw: bytes, headers: dict[str, str],
                      entry: dict[str, Any], number: int) -> Response:
        try:
            body = _loads(raw) if raw else None
        except ValueError:
            body = None
            self._check_auth(kind, headers)
            raise _Reject(400, "invalid_request_error", "The request body is not valid JSON.") from None
        entry["body"] = body
        self._check_auth(kind, headers)
        self._validate(kind, body, headers)

        config = self.config
        with self._lock:
            rng = self._rng
            fault, hang, bad_json, jitter = rng.random(), rng.random(), rng.random(), rng.random()
            cut_body = rng.random() < config.p_cut_body
            # Drawn only when asked for, so seeded runs of the other faults keep their sequence.
            no_usage = config.p_no_usage > 0 and rng.random() < config.p_no_usage
            error_body = config.p_error_body > 0 and rng.random() < config.p_error_body

        if config.out_of_quota:  # OpenAI's documented answer when billing, not pacing, stops calls
            if kind == ANTHROPIC:
                raise _Reject(400, "invalid_request_error", "Your credit balance is too low to "
                                                            "access the Anthropic API.")
            raise _Reject(429, "insufficient_quota", "You exceeded your current quota, please check "
                                                     "your plan and billing details.",
                          code="insufficient_quota")
        if config.no_model_access:
            if kind == ANTHROPIC:
                raise _Reject(403, "permission_error", "Your API key does not have permission to use "
                                                       "the specified resource.")
            raise _Reject(403, "invalid_request_error", f"Project `proj_standin` does not have access "
                          f"to model `{body.get('model')}`", code="model_not_found")
        wait = self._rate_check(config)
        if wait is not None:
            return self._rate_limited(kind, wait, number, f"limit {config.rpm} per min")
        if fault < config.p429:
            return self._rate_limited(kind, config.retry_after, number, "injected fault")
        used = self._admit()
        # A prompt cache entry is readable once the call that wrote it is answered: calls that
        # arrive before that each write it again (Anthropic's docs say so for parallel calls).
        cache_prefix = self._cache_prefix(body)
        with self._lock:
            cache_ready = cache_prefix in self._cached_prompts
        cache = (0, 0) if cache_prefix is None else \
            (estimate_tokens(cache_prefix), 0) if cache_ready else (0, estimate_tokens(cache_prefix))

        if hang < config.p_hang:
            delay = config.hang_seconds
        else:
            delay = max(0.0, config.latency + (2 * jitter - 1) * config.jitter)
        if delay > 0:
            await self._sleep(delay)
        if self._stopping:
            if kind == ANTHROPIC:
                raise _Reject(503, "api_error", "The stand-in is shutting down")
            raise _Reject(503, "server_error", "The stand-in is shutting down")

        if fault < config.p429 + config.p500:
            if kind == ANTHROPIC:
                reject = _Reject(500, "api_error", "Internal server error")
            else:
                reject = _Reject(500, "server_error", "The server had an error while processing "
                                                      "your request. Sorry about that!")
            return self._reject(kind, reject, number)

        prompt = last_user_message(body.get("messages"))
        scripted = self._scripted(prompt)
        limits = self._limit_headers(kind, config, used)
        if kind == ANTHROPIC:
            payload = self._anthropic_reply(body, prompt, scripted, bad_json < config.p_bad_json,
                                            number, cache)
            limits["request-id"] = f"req_standin{number:013d}"
        else:
            payload = self._chat_reply(kind, body, prompt, scripted,
                                       bad_json < config.p_bad_json, number, cache)
            limits["x-request-id"] = f"req_standin{number:013d}"
        if cache_prefix is not None:
            with self._lock:
                self._cached_prompts.add(cache_prefix)
        if no_usage:
            if config.no_usage_as == "null":
                payload["usage"] = dict.fromkeys(payload["usage"])
            else:
                del payload["usage"]
        if await request.is_disconnected():
            # The client died while we "thought" (kill -9 mid-run): nobody receives this answer,
            # so it is no successful call (499 is nginx's "client closed request").
            return Response(status_code=499)
        if error_body:  # no successful call: there is no answer in it
            return self._json({"error": {"message": "Upstream model error: the model did not answer",
                                         "type": "server_error", "code": 502}}, 200, limits)
        if cut_body:  # no successful call either: the client cannot read the answer
            whole = _dumps(payload)
            return Response(whole[:len(whole) // 2], status_code=200, headers=limits,
                            media_type="application/json")
        with self._lock:
            # The whole conversation is the request: a repair turn differs from the first ask.
            prompt = (kind, _all_text(body))
            self._calls[prompt] += 1
            self._first_answered.setdefault(prompt, time.monotonic())
        return self._json(payload, 200, limits)

    @staticmethod
    def _limit_headers(kind: str, config: StandinConfig, used: int) -> dict[str, str]:
        if config.rpm is None:
            return {}
        remaining = str(max(0, config.rpm - used))
        if kind == ANTHROPIC:
            return {"anthropic-ratelimit-requests-limit": str(config.rpm),
                    "anthropic-ratelimit-requests-remaining": remaining}
        return {"x-ratelimit-limit-requests": str(config.rpm),
                "x-ratelimit-remaining-requests": remaining}

    def _cache_prefix(self, body: dict[str, Any]) -> str | None:
        """The part of this request the prompt cache holds: its system prompt, when long enough.
        OpenAI caches a chat request's first (system) message on its own; Anthropic only a
        system whose block carries `cache_control`."""
        minimum = self.config.prompt_cache_min_tokens
        if "system" in body:
            blocks = body["system"] if isinstance(body["system"], list) else []
            marked = any(isinstance(b, dict) and b.get("cache_control") for b in blocks)
            system = _text_of(body["system"]) if marked else ""
        else:
            messages = body.get("messages") or [{}]
            first = messages[0] if isinstance(messages[0], dict) else {}
            system = _text_of(first.get("content")) if first.get("role") in ("system", "developer") else ""
        if minimum is None or not system or estimate_tokens(system) < minimum:
            return None
        return system

    def _chat_reply(self, kind: str, body: dict[str, Any], prompt: str, scripted: str | None,
                    bad_json: bool, number: int, cache: tuple[int, int]) -> dict[str, Any]:
        response_format = body.get("response_format") or {}
        fmt = response_format.get("type") if isinstance(response_format, dict) else None
        schema: dict[str, Any] | None = None
        if fmt == "json_schema":
            spec = response_format.get("json_schema") or {}
            schema = spec.get("schema") if isinstance(spec.get("schema"), dict) else {}
        elif fmt == "json_object":
            schema = _schema_in_text(_all_text(body)) or {
                "type": "object", "properties": {"answer": {"type": "string"}}}
        if scripted is not None:
            content = scripted
        elif schema is not None and bad_json:
            content = BAD_JSON_REPLY
        elif schema is not None:
            content = json.dumps(schema_value(schema, "answer", prompt), ensure_ascii=False)
        else:
            content = f"Answer to: {prompt[:80]}"
        content, finish_reason = _cut_to(content, body.get("max_completion_tokens")
                                         or body.get("max_tokens"), "length", "stop")
        prompt_tokens = estimate_tokens(_all_text(body))
        completion_tokens = estimate_tokens(content)
        cached, _ = cache  # (read, written): OpenAI reports reads only, writes cost nothing extra
        result: dict[str, Any] = {
            "id": f"chatcmpl-standin{number:012d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "refusal": None,
                                     "content": [{"type": "text", "text": content}]
                                     if self.config.content_as_parts else content},
                         "logprobs": None, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens,
                      "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
            "system_fingerprint": "fp_standin",
        }
        if kind == GROQ:
            result["x_groq"] = {"id": f"req_standin{number:013d}"}
        return result

    def _anthropic_reply(self, body: dict[str, Any], prompt: str, scripted: str | None,
                         bad_json: bool, number: int, cache: tuple[int, int]) -> dict[str, Any]:
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        choice = body.get("tool_choice") if isinstance(body.get("tool_choice"), dict) else {}
        forced: dict[str, Any] | None = None
        if tools and choice.get("type") == "tool":
            forced = next((t for t in tools if t.get("name") == choice.get("name")), None)
        elif tools and choice.get("type") == "any":
            forced = tools[0]
        stop_reason = "end_turn"
        if scripted is not None:
            # An empty answer is an empty list of blocks, as the API sends it.
            content: list[dict[str, Any]] = [{"type": "text", "text": scripted}] if scripted else []
            output_text = scripted
        elif forced is not None and bad_json:
            content = [{"type": "text", "text": BAD_JSON_REPLY}]
            output_text = BAD_JSON_REPLY
        elif forced is not None:
            schema = forced.get("input_schema") or {"type": "object", "properties": {}}
            value = schema_value(schema, "input", prompt)
            if not isinstance(value, dict):
                value = {"input": value}
            content = [{"type": "tool_use", "id": f"toolu_standin{number:013d}",
                        "name": forced["name"], "input": value}]
            output_text = json.dumps(value, ensure_ascii=False)
            stop_reason = "tool_use"
        else:
            output_text = f"Answer to: {prompt[:80]}"
            content = [{"type": "text", "text": output_text}]
        read, written = cache
        if estimate_tokens(output_text) > body["max_tokens"]:
            stop_reason = "max_tokens"
            if content[0]["type"] == "tool_use":  # the tool's input was not finished
                content[0]["input"] = {}
            else:
                output_text, _ = _cut_to(output_text, body["max_tokens"], "", "")
                content = [{"type": "text", "text": output_text}]
        return {
            "id": f"msg_standin{number:013d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            # input_tokens are those after the last cache breakpoint, apart from the cache's.
            "usage": {"input_tokens": estimate_tokens(_all_text(body)) - read - written,
                      "cache_creation_input_tokens": written, "cache_read_input_tokens": read,
                      "output_tokens": estimate_tokens(output_text)},
        }


# --------------------------------------------------------------------------- command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.standins.llm_server",
        description="Serve the OpenAI/Groq/Anthropic stand-in in the foreground; prints the "
                    "stats as JSON on SIGTERM/SIGINT (GET /stats, POST /reset at any time).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--rpm", type=int, default=None)
    parser.add_argument("--p429", type=float, default=0.0)
    parser.add_argument("--p500", type=float, default=0.0)
    parser.add_argument("--p-bad-json", dest="p_bad_json", type=float, default=0.0)
    parser.add_argument("--p-hang", dest="p_hang", type=float, default=0.0)
    parser.add_argument("--p-cut-body", dest="p_cut_body", type=float, default=0.0)
    parser.add_argument("--p-error-body", dest="p_error_body", type=float, default=0.0)
    parser.add_argument("--out-of-quota", dest="out_of_quota", action="store_true")
    parser.add_argument("--no-model-access", dest="no_model_access", action="store_true")
    parser.add_argument("--p-no-usage", dest="p_no_usage", type=float, default=0.0)
    parser.add_argument("--no-usage-as", dest="no_usage_as", choices=["omitted", "null"],
                        default="omitted")
    parser.add_argument("--prompt-cache-min-tokens", dest="prompt_cache_min_tokens", type=int, default=None)
    parser.add_argument("--hang-seconds", dest="hang_seconds", type=float, default=30.0)
    parser.add_argument("--retry-after", dest="retry_after", type=float, default=1.0)
    parser.add_argument("--api-key", dest="api_key", default=None)
    parser.add_argument("--content-as-parts", dest="content_as_parts", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    config = StandinConfig(**{f.name: getattr(args, f.name) for f in fields(StandinConfig)})
    server = StandinServer(config, host=args.host, port=args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"LLM stand-in listening on {server.url}", file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(json.dumps(server.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
