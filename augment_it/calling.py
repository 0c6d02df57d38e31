"""The one layer every model call goes through: cache, concurrency, pacing and retries.

Providers only know how to send one request; this wraps any of them, so the rules for 429s,
retry-after, backoff and the cache are written once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter
from pydantic import BaseModel, Field
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from augment_it.cache import CLAIM_LEASE, AnswerCache
from augment_it.providers.base import (
    CHARACTERS_PER_TOKEN,
    ModelReply,
    ModelRequest,
    Provider,
    ProviderError,
)


class CallPolicy(BaseModel):
    # Bounded here, not only on the command line: a deployment's parameters come from a form, and
    # 0 workers would process nothing, a timeout of 0 fail every call, an rpm of 0 pace nothing.
    concurrency: int = Field(16, ge=1)
    max_attempts: int = Field(6, ge=1)
    backoff_initial: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    timeout: float = Field(60.0, gt=0)  # per request
    rpm: float | None = Field(None, gt=0)  # requests per minute, paced on the client side
    tpm: float | None = Field(None, gt=0)  # tokens per minute, paced on an estimate of each prompt's size


@dataclass
class CallStats:
    sent: int = 0  # requests that reached the provider (including retries)
    answered: int = 0
    cache_hits: int = 0  # answered by the cache, or by another call of the same prompt in flight
    retries: int = 0
    rate_limited: int = 0
    not_sent: int = 0  # calls not made after an answer that every call of the run would get
    errors: dict[str, int] = field(default_factory=dict)


# Which chunk a call belongs to; a freed slot goes to the earliest chunk. Chunks then finish (and
# checkpoint) in order, and the next chunk takes each slot as soon as the one before it has no
# prompt left to send, instead of both draining at once and leaving slots empty in between.
call_rank: ContextVar[int] = ContextVar("call_rank", default=0)


class RankedSlots:
    """A semaphore whose freed slots go to the waiter of lowest rank, first come within a rank."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    async def acquire(self, rank: int) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        granted = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (rank, next(self._arrivals), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted just as it was cancelled: pass the slot on
            raise

    @asynccontextmanager
    async def held(self, rank: int) -> AsyncIterator[None]:
        await self.acquire(rank)
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        while self._waiters:
            _, _, granted = heapq.heappop(self._waiters)
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1


class SendingGate:
    """Lets a process stop sending while the calls it has sent are answered and kept.

    The warm process's run closes it when the command it runs for is killed (cli/daemon.py): the
    answers already on their way are paid for, so they are read and cached, not dropped with the
    process; a rerun then sends only the prompts that were never sent."""

    def __init__(self) -> None:
        self._open = True
        self._sending = 0  # calls that sent a request whose answer is not kept yet
        self._changed = threading.Condition()  # calls run in the event loops of several threads
        self._call_sent: ContextVar[list[bool] | None] = ContextVar("call_sent", default=None)

    @contextmanager
    def call(self) -> Iterator[None]:
        """One call, from its first request to its answer kept (or its failure)."""
        sent = [False]
        token = self._call_sent.set(sent)
        try:
            yield
        finally:
            self._call_sent.reset(token)
            if sent[0]:
                self._add(-1)

    async def passing(self) -> None:
        """Before each request: return at once while open; once closed, only when the run is
        cancelled (it ends). A call counts from its first request on: one still waiting for a
        slot when the gate closes is not waited for (the slots are held by parked calls)."""
        sent = self._call_sent.get()
        with self._changed:
            if self._open:
                if sent is not None and not sent[0]:
                    sent[0] = True
                    self._sending += 1
                return
            if sent is not None and sent[0]:  # a retry: what it sent before was answered (an error)
                sent[0] = False
                self._sending -= 1
                self._changed.notify_all()
        await asyncio.Event().wait()

    def close(self, timeout: float) -> bool:
        """Send nothing more; wait up to TIMEOUT seconds for every call that sent to end."""
        with self._changed:
            self._open = False
            return self._changed.wait_for(lambda: self._sending == 0, timeout)

    def _add(self, calls: int) -> None:
        with self._changed:
            self._sending += calls
            self._changed.notify_all()


SENDING = SendingGate()


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class ModelCaller:
    def __init__(self, provider: Provider, policy: CallPolicy, cache: AnswerCache | None = None) -> None:
        self.provider = provider
        self.policy = policy
        self.cache = cache
        self.stats = CallStats()
        self._slots = RankedSlots(policy.concurrency)
        self._requests = _paced(policy.rpm) if policy.rpm else None
        self._tokens = _paced(policy.tpm) if policy.tpm else None
        self._prompt_cache_writes: dict[tuple[str, str], asyncio.Event] = {}
        self._in_flight: dict[str, asyncio.Future[ModelReply]] = {}  # by request key
        self._renewing: asyncio.Task[None] | None = None  # this caller's claims, while it runs
        self._refused: ProviderError | None = None  # the first answer every call would get
        self._backoff = wait_exponential_jitter(multiplier=policy.backoff_initial, max=policy.backoff_max,
                                                jitter=policy.backoff_initial)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.backoff_max)
        return self._backoff(state)

    async def call(self, request: ModelRequest) -> ModelReply:
        key = request.key()
        if (hit := self._cached(key)) is not None:
            return hit
        if (first := self._in_flight.get(key)) is not None:
            # The same prompt twice in a run (two records alike): one call, both answered by it.
            reply = await asyncio.shield(first)
            self.stats.cache_hits += 1
            return dataclasses.replace(reply, cached=True)
        self._in_flight[key] = answered = asyncio.get_running_loop().create_future()
        try:
            with SENDING.call():
                reply = await self._claimed(request, key)
        except Exception as exc:  # the same failure for the calls waiting on this one
            answered.set_exception(exc)
            answered.exception()  # marked as read: asyncio would log it when nobody waited for it
            raise
        except BaseException:  # cancelled with the run
            answered.cancel()
            raise
        finally:
            del self._in_flight[key]
        answered.set_result(reply)
        return reply

    def _cached(self, key: str) -> ModelReply | None:
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            self.stats.cache_hits += 1
        return hit

    async def _claimed(self, request: ModelRequest, key: str) -> ModelReply:
        """Send REQUEST once no other process is sending it; if one was, its answer instead."""
        if self.cache is None:
            return await self._retried(request)
        self._renew_claims()
        pause = 0.05
        while not self.cache.claim(key):  # answered, or another process is sending it
            if (hit := self._cached(key)) is not None:
                return hit
            await asyncio.sleep(pause)
            pause = min(2 * pause, 1.0)
        try:
            reply = await self._retried(request)
        except BaseException:
            self.cache.release(key)
            raise
        if reply.incomplete is None:
            self.cache.put(key, request.provider, request.model, reply)  # and releases the claim
        else:  # a cut-off answer is asked again
            self.cache.release(key)
        return reply

    def _renew_claims(self) -> None:
        """Keep renewing this caller's claims (a wait for a slot or the rate limit can outlast a
        lease), in this event loop, until the caller is closed."""
        loop = asyncio.get_running_loop()
        if self._renewing is not None and not self._renewing.done() and self._renewing.get_loop() is loop:
            return
        cache = self.cache
        assert cache is not None

        async def renew() -> None:
            while True:
                await asyncio.sleep(CLAIM_LEASE / 3)
                cache.renew()

        self._renewing = loop.create_task(renew())

    async def _retried(self, request: ModelRequest) -> ModelReply:
        if self._refused is not None:
            self.stats.not_sent += 1
            why = ("no call of this run could reach the provider" if self._refused.unreachable
                   else "an earlier call was refused, as every call of this run would be")
            raise ProviderError(f"not sent: {why} ({self._refused})", retryable=False,
                                status=self._refused.status, run_wide=True)
        retrying = AsyncRetrying(stop=stop_after_attempt(self.policy.max_attempts), wait=self._wait,
                                 retry=retry_if_exception(_retryable), reraise=True)
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.stats.retries += 1
                    reply = await self._send(request)
        except ProviderError as exc:
            # Retries spent and no call of the run ever connected: a wrong base URL or a server
            # that is down, which the remaining records would each spend their retries on too.
            if exc.unreachable and self.stats.answered == 0 and self._refused is None:
                self._refused = exc
            raise
        return reply

    @asynccontextmanager
    async def _prompt_cache_written(self, request: ModelRequest) -> AsyncIterator[None]:
        """Let the first call with a long shared system prompt go alone where writing the
        provider's prompt cache is billed (Anthropic).

        The entry is readable only once the call writing it is answered, so each call sent beside
        it would write it again; the others wait for that first attempt to end, answered or not."""
        minimum = self.provider.cache_write_min_tokens
        # 3 characters a token, the low end for English: a prompt just long enough is not missed.
        if minimum is None or not request.cache_system or len(request.system or "") < 3 * minimum:
            yield
            return
        prefix = (request.model, request.system or "")
        written = self._prompt_cache_writes.get(prefix)
        if written is None:
            self._prompt_cache_writes[prefix] = written = asyncio.Event()
            try:
                yield
            finally:
                written.set()
        else:
            await written.wait()
            yield

    async def _send(self, request: ModelRequest) -> ModelReply:
        async with self._prompt_cache_written(request), self._slots.held(call_rank.get()):
            if self._requests is not None:
                await self._requests.acquire()
            if self._tokens is not None:
                estimate = min(self._tokens.max_rate, _estimate_tokens(request))
                await self._tokens.acquire(estimate)
            await SENDING.passing()
            self.stats.sent += 1
            try:
                reply = await asyncio.wait_for(self.provider.send(request), self.policy.timeout)
            except TimeoutError:
                self._count("timeout")
                raise ProviderError(f"{request.provider}: no answer within {self.policy.timeout:g} s",
                                    retryable=True) from None
            except ProviderError as exc:
                self._count(str(exc.status or "connection"))
                if exc.status == 429:
                    self.stats.rate_limited += 1
                if exc.run_wide and self._refused is None:  # sending the rest would only repeat it
                    self._refused = exc
                raise
            self.stats.answered += 1
            return reply

    def _count(self, kind: str) -> None:
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    async def close(self) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
        await self.provider.close()


def _paced(per_minute: float) -> AsyncLimiter:
    """A limiter for a per-minute rate, paced per second so a run does not start with one burst.

    Below 60 a minute a bucket of one second would hold less than one request; it then holds one.
    """
    if per_minute >= 60:
        return AsyncLimiter(per_minute / 60, 1)
    return AsyncLimiter(1, 60 / per_minute)


def _estimate_tokens(request: ModelRequest) -> float:
    return request.characters() / CHARACTERS_PER_TOKEN + request.max_tokens
