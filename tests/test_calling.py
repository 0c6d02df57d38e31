"""The shared calling layer: retries, retry-after, timeouts, pacing and the answer cache."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections import deque

import pytest

from augment_it.cache import AnswerCache
from augment_it.calling import CallPolicy, ModelCaller, call_rank
from augment_it.providers import make_provider
from augment_it.providers.base import ModelReply, ModelRequest, ProviderError


class QueuedProvider:
    """A provider whose outcomes are queued: an answer text or an exception, in order."""

    name = "queued"
    cache_write_min_tokens = None

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = deque(outcomes)
        self.sent: list[float] = []

    async def send(self, request: ModelRequest) -> ModelReply:
        self.sent.append(time.monotonic())
        outcome = self.outcomes.popleft()
        if isinstance(outcome, Exception):
            raise outcome
        if outcome == "hang":
            await asyncio.sleep(30)
        return ModelReply(str(outcome), 3, 4)

    async def close(self) -> None:
        pass


def request(prompt: str = "hi") -> ModelRequest:
    return ModelRequest("queued", "m", None, (("user", prompt),))


FAST = CallPolicy(backoff_initial=0.01, backoff_max=0.05, timeout=0.3)


def test_retryable_errors_are_retried_and_permanent_ones_are_not() -> None:
    provider = QueuedProvider(ProviderError("503", retryable=True), ProviderError("429", retryable=True),
                              "answer")
    caller = ModelCaller(provider, FAST)
    assert asyncio.run(caller.call(request())).text == "answer"
    assert caller.stats.retries == 2 and caller.stats.sent == 3

    provider = QueuedProvider(ProviderError("401 bad key", retryable=False), "never")
    caller = ModelCaller(provider, FAST)
    with pytest.raises(ProviderError, match="401"):
        asyncio.run(caller.call(request()))
    assert caller.stats.sent == 1


def test_retry_after_is_honoured() -> None:
    provider = QueuedProvider(ProviderError("429", retryable=True, retry_after=0.4, status=429), "ok")
    caller = ModelCaller(provider, CallPolicy(backoff_initial=0.01))
    asyncio.run(caller.call(request()))
    assert provider.sent[1] - provider.sent[0] >= 0.39
    assert caller.stats.rate_limited == 1


def test_a_hanging_request_times_out_and_is_retried() -> None:
    caller = ModelCaller(QueuedProvider("hang", "ok"), FAST)
    assert asyncio.run(caller.call(request())).text == "ok"
    assert caller.stats.errors == {"timeout": 1}


def test_after_a_refusal_every_call_would_get_the_rest_are_not_sent(tmp_path) -> None:
    """A 404 (no such model) or 401 (key refused) answers every request of the run alike."""
    cache = AnswerCache(tmp_path / "a.sqlite")
    cache.put(request("known").key(), "queued", "m", ModelReply("cached answer", 1, 1))
    gone = ProviderError("queued: HTTP 404: The model `m` does not exist", retryable=False, status=404,
                         run_wide=True)
    caller = ModelCaller(QueuedProvider(gone, "never sent"), FAST, cache)

    async def run() -> list[object]:
        outcomes: list[object] = []
        for prompt in ("a", "b", "known", "c"):
            try:
                outcomes.append(await caller.call(request(prompt)))
            except ProviderError as exc:
                outcomes.append(exc)
        return outcomes

    first, *rest = asyncio.run(run())
    assert first is gone and caller.provider.outcomes == deque(["never sent"])
    assert [type(r).__name__ for r in rest] == ["ProviderError", "ModelReply", "ProviderError"]
    assert str(rest[0]) == "not sent: an earlier call was refused, as every call of this run would be " \
        "(queued: HTTP 404: The model `m` does not exist)"
    assert not rest[0].retryable and rest[1].text == "cached answer"
    assert (caller.stats.sent, caller.stats.not_sent, caller.stats.cache_hits) == (1, 2, 1)


def test_a_provider_no_call_ever_reached_is_not_called_for_the_rest() -> None:
    """A wrong base URL or a server that is down: each record would spend all its retries."""
    def down() -> ProviderError:
        return ProviderError("queued: connection failed", retryable=True, unreachable=True)

    async def outcomes(caller: ModelCaller) -> list[str]:
        said = []
        for prompt in ("a", "b", "c"):
            try:
                said.append((await caller.call(request(prompt))).text)
            except ProviderError as exc:
                said.append(str(exc))
        return said

    never = ModelCaller(QueuedProvider(*(down() for _ in range(6))), FAST)
    assert asyncio.run(outcomes(never)) == ["queued: connection failed"] + 2 * [
        "not sent: no call of this run could reach the provider (queued: connection failed)"]
    assert (never.stats.sent, never.stats.not_sent) == (6, 2)
    # Once a call was answered, a lost connection is an outage of the moment: each record retries.
    reached = ModelCaller(QueuedProvider("fine", *(down() for _ in range(12))), FAST)
    assert asyncio.run(outcomes(reached)) == ["fine", *2 * ["queued: connection failed"]]
    assert reached.stats.not_sent == 0


def test_an_unforeseen_error_fails_its_record_not_the_chunk() -> None:
    from augment_it.pricing import PriceTable
    from augment_it.processing import ModelPlan, augment_records
    from augment_it.templates import parse_template

    class OddAnswers(QueuedProvider):
        async def send(self, request: ModelRequest) -> ModelReply:
            if "odd" in request.messages[-1][1]:  # the record's prompt
                return ModelReply(None, 1, 1)  # type: ignore[arg-type]  # no text at all
            return await super().send(request)

    template = parse_template("name: t\nmodel: m\nprompt: 'About {{ name }}'")
    plan = ModelPlan(ModelCaller(OddAnswers("fine answer", "fine answer"), FAST))
    records = [{"_id": str(i), "name": name} for i, name in enumerate(["a", "odd", "b"])]
    out = asyncio.run(augment_records(records, template, plan, PriceTable()))
    assert [(r["_ai_status"], r["t"]) for r in out] == [("ok", "fine answer"), ("failed", None),
                                                        ("ok", "fine answer")]
    assert out[1]["_reason"] == "unexpected error: AttributeError: 'NoneType' object has no attribute 'strip'"


def test_attempts_are_bounded() -> None:
    provider = QueuedProvider(*[ProviderError("500", retryable=True)] * 3, "late")
    caller = ModelCaller(provider, FAST.model_copy(update={"max_attempts": 3}))
    with pytest.raises(ProviderError, match="500"):
        asyncio.run(caller.call(request()))
    assert caller.stats.sent == 3


def test_concurrency_is_bounded_and_rpm_is_paced() -> None:
    class Slow(QueuedProvider):
        active = peak = 0

        async def send(self, request: ModelRequest) -> ModelReply:
            Slow.active += 1
            Slow.peak = max(Slow.peak, Slow.active)
            await asyncio.sleep(0.02)
            Slow.active -= 1
            return ModelReply("x")

    async def run(caller: ModelCaller, n: int) -> float:
        started = time.monotonic()
        await asyncio.gather(*(caller.call(request(str(i))) for i in range(n)))
        return time.monotonic() - started

    assert asyncio.run(run(ModelCaller(Slow(), CallPolicy(concurrency=4)), 40)) >= 0.19
    assert Slow.peak == 4
    # 600 rpm = 10/s with a one-second bucket: 30 requests need about two seconds.
    assert asyncio.run(run(ModelCaller(Slow(), CallPolicy(concurrency=50, rpm=600)), 30)) >= 1.8


def test_freed_slots_go_to_the_earliest_chunk_first() -> None:
    """A later chunk queued first still waits while an earlier chunk has calls to send, so
    chunks finish (and checkpoint) in order; cancelled waiters give their slot on."""
    order: list[str] = []

    class Recording(QueuedProvider):
        async def send(self, request: ModelRequest) -> ModelReply:
            order.append(request.messages[0][1])
            await asyncio.sleep(0.01)
            return ModelReply("x")

    async def chunk(caller: ModelCaller, rank: int, size: int) -> None:
        call_rank.set(rank)
        await asyncio.gather(*(caller.call(request(f"c{rank}-{i}")) for i in range(size)))

    async def run() -> None:
        caller = ModelCaller(Recording(), CallPolicy(concurrency=2))
        late = asyncio.create_task(chunk(caller, 1, 4))
        await asyncio.sleep(0.002)  # the later chunk takes both slots and queues the rest first
        cancelled = asyncio.create_task(chunk(caller, 0, 1))
        await asyncio.sleep(0.002)  # queued ahead of everything, then given up
        cancelled.cancel()
        await asyncio.gather(late, chunk(caller, 0, 4), return_exceptions=True)

    asyncio.run(run())
    assert order[:2] == ["c1-0", "c1-1"]
    assert order[2:6] == [f"c0-{i}" for i in range(4)]
    assert order[6:] == ["c1-2", "c1-3"]


def test_the_cache_answers_repeats_without_sending(tmp_path) -> None:
    cache = AnswerCache(tmp_path / "answers.sqlite")
    provider = QueuedProvider("first")
    caller = ModelCaller(provider, FAST, cache)
    assert asyncio.run(caller.call(request())).text == "first"
    reopened = ModelCaller(QueuedProvider(), FAST, AnswerCache(tmp_path / "answers.sqlite"))
    hit = asyncio.run(reopened.call(request()))
    assert hit.text == "first" and hit.cached and reopened.stats.sent == 0
    other = request().repair("first", "bad")
    assert other.key() != request().key()


def test_the_cache_keeps_the_prompt_caches_share_and_reads_an_earlier_releases_file(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "answers.sqlite"
    with sqlite3.connect(path) as old:  # the table as releases before the prompt cache's columns made it
        old.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, provider TEXT, model TEXT, text TEXT,"
                    " input_tokens INTEGER, output_tokens INTEGER, created REAL)")
        old.execute("INSERT INTO answers VALUES ('k0', 'openai', 'm', 'old answer', 12, 3, 0)")
    cache = AnswerCache(path)
    assert cache.get("k0") == ModelReply("old answer", 12, 3)
    cache.put("k1", "anthropic", "m", ModelReply("new", 2000, 40, cached_input_tokens=1800,
                                                 cache_write_tokens=0))
    again = AnswerCache(path)
    assert again.get("k1") == ModelReply("new", 2000, 40, cached_input_tokens=1800)
    assert again.get("k1").cached


def test_real_sdk_faults_end_ok_with_no_duplicate_answers(llm) -> None:
    llm.configure(p429=0.15, p500=0.15, seed=3, retry_after=0.05)

    async def run() -> list[str]:
        provider = make_provider("openai", timeout=5)
        caller = ModelCaller(provider, CallPolicy(concurrency=8, backoff_initial=0.01, backoff_max=0.1))
        try:
            asks = [ModelRequest("openai", "m", None, (("user", f"p{i}"),)) for i in range(60)]
            replies = await asyncio.gather(*(caller.call(ask) for ask in asks))
        finally:
            await caller.close()
        assert caller.stats.rate_limited > 0 and caller.stats.retries > 0
        return [r.text for r in replies]

    texts = asyncio.run(run())
    assert len(texts) == 60 and llm.duplicates() == 0
    assert llm.stats()["answered"] == 60


def test_a_templates_rate_limits_apply_unless_the_options_override_them(llm) -> None:
    from augment_it.processing import open_plan
    from augment_it.settings import ProcessSettings
    from augment_it.templates import parse_template

    template = parse_template("name: t\nmodel: gpt-4o-mini\nprompt: hi\nrpm: 3000\ntpm: 90000")
    plan = open_plan(template, ProcessSettings())
    assert (plan.caller.policy.rpm, plan.caller.policy.tpm) == (3000, 90000)
    plan = open_plan(template, ProcessSettings(call=CallPolicy(rpm=60)))
    assert (plan.caller.policy.rpm, plan.caller.policy.tpm) == (60, 90000)


def test_a_rate_below_one_a_second_is_paced_not_refused() -> None:
    provider = QueuedProvider("a", "b")
    caller = ModelCaller(provider, CallPolicy(rpm=40))  # one request every 1.5 s

    async def both() -> None:
        await asyncio.gather(caller.call(request("1")), caller.call(request("2")))

    asyncio.run(both())
    assert provider.sent[1] - provider.sent[0] >= 1.4


def answers_to_twenty_prompts(provider: str) -> list[ModelReply]:
    """Twenty prompts at once through the provider's SDK, each retried until it is answered."""
    async def run() -> list[ModelReply]:
        caller = ModelCaller(make_provider(provider, timeout=5), FAST.model_copy(update={"timeout": 5}))
        try:
            return await asyncio.gather(*(caller.call(ModelRequest(provider, "m", None, (("user", f"p{i}"),)))
                                          for i in range(20)))
        finally:
            await caller.close()

    return asyncio.run(run())


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_an_answer_body_cut_short_is_retried_not_fatal(provider: str, llm) -> None:
    llm.configure(p_cut_body=0.3, seed=5)
    replies = answers_to_twenty_prompts(provider)
    assert [r.text for r in replies] == [f"Answer to: p{i}" for i in range(20)]
    assert llm.stats()["answered"] == 20 and llm.duplicates() == 0
    assert llm.total_requests > 20  # some bodies were cut and asked again


@pytest.mark.parametrize("provider", ["openai", "groq"])
def test_an_answer_whose_content_is_a_list_of_parts_is_read(provider: str, llm) -> None:
    """Some OpenAI-compatible servers send `content` as typed parts; it used to crash the chunk."""
    llm.configure(content_as_parts=True)
    assert [r.text for r in answers_to_twenty_prompts(provider)] == [f"Answer to: p{i}" for i in range(20)]


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_an_answer_cut_off_at_max_tokens_says_so_and_is_not_cached(provider: str, llm, tmp_path) -> None:
    async def run() -> ModelReply:
        caller = ModelCaller(make_provider(provider, timeout=5), FAST, AnswerCache(tmp_path / "a.sqlite"))
        try:
            return await caller.call(ModelRequest(provider, "m", None, (("user", "tell me a long story"),),
                                                  max_tokens=3))
        finally:
            await caller.close()

    reply = asyncio.run(run())
    assert reply.incomplete == "the answer was cut off at max_tokens (3); raise max_tokens in the template"
    assert AnswerCache(tmp_path / "a.sqlite").get(
        ModelRequest(provider, "m", None, (("user", "tell me a long story"),), max_tokens=3).key()) is None


def test_every_documented_stop_reason_that_cuts_an_answer_short_fails_it() -> None:
    from augment_it.providers.base import incomplete_reason

    cut = ModelRequest("anthropic", "m", None, (("user", "q"),), max_tokens=7)
    for whole in ("stop", "end_turn", "stop_sequence", "tool_use", None):
        assert incomplete_reason(whole, cut) is None
    assert incomplete_reason("length", cut) == incomplete_reason("max_tokens", cut) == \
        "the answer was cut off at max_tokens (7); raise max_tokens in the template"
    assert "context window" in incomplete_reason("model_context_window_exceeded", cut)
    assert incomplete_reason("refusal", cut) == "the model refused to answer"
    assert incomplete_reason("stop", cut, refusal="I can't") == "the model refused to answer: I can't"


@pytest.mark.parametrize(("provider", "base", "called"), [("openai", "", "/chat/completions"),
                                                          ("anthropic", "/v1", "/v1/v1/messages")])
def test_a_404_names_the_url_it_came_from(provider: str, base: str, called: str, llm) -> None:
    """A base URL without its /v1, or with one too many, is answered 404 on every call; an
    OpenAI-compatible server often says no more than "Not Found"."""
    async def run() -> None:
        caller = ModelCaller(make_provider(provider, base_url=llm.url + base, timeout=5), FAST)
        try:
            await caller.call(ModelRequest(provider, "m", None, (("user", "q"),)))
        finally:
            await caller.close()

    with pytest.raises(ProviderError, match=rf"^{provider}: HTTP 404 from {llm.url}{called}: Invalid URL"):
        asyncio.run(run())


@pytest.mark.parametrize(("refusal", "provider", "said"), [
    ("out_of_quota", "openai", "HTTP 429: You exceeded your current quota"),
    ("out_of_quota", "anthropic", "HTTP 400: Your credit balance is too low"),
    # A key whose project or workspace may not use the model: every call would be refused alike.
    ("no_model_access", "openai", "HTTP 403: Project `proj_standin` does not have access to model"),
    ("no_model_access", "groq", "HTTP 403: Project `proj_standin` does not have access to model"),
    ("no_model_access", "anthropic", "HTTP 403: Your API key does not have permission")])
def test_an_exhausted_quota_or_a_model_refused_is_not_retried_nor_asked_again(refusal: str, provider: str,
                                                                               said: str, llm) -> None:
    llm.configure(**{refusal: True})

    async def run() -> list[BaseException]:
        caller = ModelCaller(make_provider(provider, timeout=5), FAST)
        refused = []
        try:
            for prompt in ("a", "b"):
                with pytest.raises(ProviderError) as caught:
                    await caller.call(request(prompt))
                refused.append(caught.value)
        finally:
            await caller.close()
        return refused

    first, second = asyncio.run(run())
    assert str(first).startswith(f"{provider}: {said}")
    assert str(second).startswith("not sent: an earlier call was refused")  # as every call would be
    assert llm.total_requests == 1


def test_a_429_without_retry_after_waits_for_the_exhausted_limits_reset() -> None:
    from datetime import UTC, datetime, timedelta

    from augment_it.providers.base import rate_limit_reset

    openai_headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m30.5s",
                      "x-ratelimit-remaining-tokens": "9000", "x-ratelimit-reset-tokens": "6m0s"}
    assert rate_limit_reset(openai_headers) == 90.5
    assert rate_limit_reset({"x-ratelimit-reset-requests": "20ms"}) == 0.02
    def later(seconds: int) -> str:
        return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    anthropic_headers = {"anthropic-ratelimit-tokens-remaining": "0",
                         "anthropic-ratelimit-tokens-reset": later(8),
                         "anthropic-ratelimit-requests-remaining": "40",
                         "anthropic-ratelimit-requests-reset": later(50)}
    assert 7 < rate_limit_reset(anthropic_headers) <= 8
    assert rate_limit_reset({"content-type": "application/json"}) is None


@pytest.mark.parametrize(("model", "formats"), [
    ("openai/gpt-oss-20b", ["json_schema", "json_schema"]),  # documented for structured outputs
    ("llama-3.1-8b-instant", ["json_schema", "json_object", "json_object"]),  # 400, then JSON mode
])
def test_groq_models_without_json_schema_take_json_mode(model: str, formats: list[str], llm) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}

    async def run() -> list[ModelReply]:
        caller = ModelCaller(make_provider("groq", timeout=5), FAST)
        try:
            return [await caller.call(ModelRequest("groq", model, "Be brief.", (("user", f"q{i}"),),
                                                   schema=schema)) for i in range(2)]
        finally:
            await caller.close()

    replies = asyncio.run(run())
    assert [json.loads(r.text) for r in replies] == [{"city": "city of q0"}, {"city": "city of q1"}]
    assert [r["body"]["response_format"]["type"] for r in llm.requests] == formats
    if "json_object" in formats:
        assert '"city"' in llm.requests[-1]["body"]["messages"][0]["content"]  # the schema, in the prompt


@pytest.mark.parametrize("no_usage_as", ["omitted", "null"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_an_answer_without_token_usage_leaves_the_counts_unknown(provider: str, no_usage_as: str,
                                                                  llm, tmp_path) -> None:
    """Unknown, not 0: zero tokens would read as a known answer that cost nothing."""
    llm.configure(p_no_usage=1.0, no_usage_as=no_usage_as)
    ask = ModelRequest(provider, "m", None, (("user", "hi"),))

    async def run() -> ModelReply:
        caller = ModelCaller(make_provider(provider, timeout=5), FAST, AnswerCache(tmp_path / "a.sqlite"))
        try:
            return await caller.call(ask)
        finally:
            await caller.close()

    reply = asyncio.run(run())
    assert reply.text == "Answer to: hi"
    assert (reply.input_tokens, reply.output_tokens) == (None, None)
    cached = AnswerCache(tmp_path / "a.sqlite").get(ask.key())
    assert cached is not None and (cached.input_tokens, cached.output_tokens) == (None, None)


def test_the_standins_command_line_sets_every_setting_the_benchmarks_use() -> None:
    """bench/throughput.py starts the stand-in by its command line: a setting added to the config
    but not to the command line stopped it from starting."""
    from dataclasses import asdict

    from tests.standins.llm_server import StandinConfig, _parse_args

    args = vars(_parse_args([]))
    assert set(asdict(StandinConfig())) <= set(args)
    assert {name: args[name] for name in asdict(StandinConfig())} == asdict(StandinConfig())


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_top_p_reaches_the_provider_and_is_part_of_the_cache_key(provider: str, llm) -> None:
    plain = ModelRequest(provider, "m", None, (("user", "hi"),))
    nucleus = ModelRequest(provider, "m", None, (("user", "hi"),), top_p=0.9)

    async def run() -> None:
        caller = ModelCaller(make_provider(provider, timeout=5), FAST)
        try:
            await caller.call(plain)
            await caller.call(nucleus)
        finally:
            await caller.close()

    asyncio.run(run())
    assert [r["body"].get("top_p") for r in llm.requests] == [None, 0.9]
    assert plain.key() != nucleus.key() and nucleus.repair("x", "y").top_p == 0.9


def test_cache_keys_of_requests_without_top_p_are_those_earlier_releases_stored() -> None:
    """A new parameter joins the key only when set: every answer already cached stays a hit."""
    request = ModelRequest("openai", "gpt-4o-mini", "sys", (("user", "hi"),), {"type": "object"}, "out",
                           temperature=0.2, max_tokens=100)
    assert request.key() == "861bc1d8ec823d23e8ee6d35ec55cfedeb4711396c0d867c118bf12f1eb6c57a"


def test_only_a_system_prompt_every_record_shares_is_marked_for_anthropics_cache(llm) -> None:
    """Anthropic caches only what is marked; a system prompt that names a field differs per record,
    and marking it would pay the cache write (1.25x input) on every call for nothing."""
    from dataclasses import replace

    from augment_it.processing import build_request
    from augment_it.templates import parse_template

    shared = parse_template("name: t\nprovider: anthropic\nmodel: m\nsystem: Be brief.\n"
                            "prompt: 'About {{ name }}'")
    personal = parse_template("name: t\nprovider: anthropic\nmodel: m\nsystem: 'You write for {{ name }}.'\n"
                              "prompt: 'About {{ name }}'")

    async def run() -> None:
        caller = ModelCaller(make_provider("anthropic", timeout=5), FAST)
        try:
            for template in (shared, personal):
                await caller.call(build_request(template, {"name": "Acme"}))
        finally:
            await caller.close()

    asyncio.run(run())
    marked = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert [r["body"]["system"] for r in llm.requests] == [marked, "You write for Acme."]
    request = build_request(shared, {"name": "Acme"})
    assert request.cache_system and replace(request, cache_system=False).key() == request.key()


def test_the_first_call_with_a_long_shared_system_prompt_writes_anthropics_cache_alone(llm) -> None:
    """Anthropic makes a cache entry readable once the call writing it is answered and bills the
    write at 1.25x input: twenty calls sent at once each wrote the same system prompt."""
    llm.configure(prompt_cache_min_tokens=1024, latency=0.3)

    async def run(system: str) -> list[ModelReply]:
        policy = FAST.model_copy(update={"timeout": 5, "concurrency": 20})
        caller = ModelCaller(make_provider("anthropic", timeout=5), policy)
        try:
            return await asyncio.gather(*(caller.call(ModelRequest(
                "anthropic", "m", system, (("user", f"p{i}"),), cache_system=True)) for i in range(20)))
        finally:
            await caller.close()

    def sent_before_the_first_answer() -> int:
        timeline = llm.timeline
        first_answer = min(answered for _, answered, _ in timeline)
        return sum(arrived < first_answer for arrived, _, _ in timeline)

    replies = asyncio.run(run("Follow the house style guide to the letter. " * 100))  # ~1,100 tokens
    assert [bool(r.cache_write_tokens) for r in replies].count(True) == 1
    assert [bool(r.cached_input_tokens) for r in replies].count(True) == 19
    assert sent_before_the_first_answer() == 1
    llm.reset()  # too short for any model to cache: nothing to wait for, all twenty go at once
    replies = asyncio.run(run("Be brief."))
    assert not any(r.cache_write_tokens for r in replies) and sent_before_the_first_answer() == 20


@pytest.mark.parametrize("provider", ["openai", "anthropic", "groq"])
def test_an_error_object_answered_with_200_is_a_failed_call_not_an_empty_answer(provider: str, llm) -> None:
    """Some OpenAI-compatible gateways answer 200 with {"error": ...} when the model behind them failed;
    read as an answer it had no text, so a plain-text record was kept as ok and empty."""
    llm.configure(p_error_body=0.3, seed=3)
    replies = answers_to_twenty_prompts(provider)
    assert [r.text for r in replies] == [f"Answer to: p{i}" for i in range(20)]
    assert llm.total_requests > 20  # the error bodies were asked again

    async def always_failing() -> None:
        caller = ModelCaller(make_provider(provider, timeout=5), FAST.model_copy(update={"max_attempts": 2}))
        try:
            await caller.call(ModelRequest(provider, "m", None, (("user", "q"),)))
        finally:
            await caller.close()

    llm.configure(p_error_body=1.0)
    with pytest.raises(ProviderError, match=rf"^{provider}: the answer \(HTTP 200\) has an error: "
                                            "Upstream model error: the model did not answer$"):
        asyncio.run(always_failing())


def test_a_cost_is_the_sum_of_its_prices_without_float_noise() -> None:
    """44 tokens in and 31 out at $0.15 / $0.60 per million were exported as 2.5199999999999996e-05."""
    from augment_it.pricing import PriceTable

    assert PriceTable().cost("gpt-4o-mini", 44, 31) == 2.52e-05


def test_the_same_prompt_twice_at_once_is_sent_once(tmp_path) -> None:
    """Two records alike (a survey's many "Great product!") were each paid for: both missed the
    cache, since neither was answered yet."""
    provider = QueuedProvider("answer")

    async def run() -> list[ModelReply]:
        caller = ModelCaller(SlowProvider(provider), FAST.model_copy(update={"timeout": 5}),
                             AnswerCache(tmp_path / "answers.sqlite"))
        replies = await asyncio.gather(*(caller.call(request("same")) for _ in range(3)))
        assert caller.stats.sent == 1 and caller.stats.cache_hits == 2
        return replies

    replies = asyncio.run(run())
    assert [r.text for r in replies] == ["answer"] * 3
    assert [r.cached for r in replies] == [False, True, True]  # one was paid for, by this run


class SlowProvider:
    """PROVIDER, answering after 0.2 s."""

    name = "queued"
    cache_write_min_tokens = None

    def __init__(self, provider: QueuedProvider) -> None:
        self.provider = provider

    async def send(self, request: ModelRequest) -> ModelReply:
        await asyncio.sleep(0.2)
        return await self.provider.send(request)

    async def close(self) -> None:
        pass


def test_a_prompt_another_process_is_sending_waits_for_its_answer(tmp_path) -> None:
    """Two runs (a schedule and a hand-started one, two workers) on the same prompts: the one
    that comes second waits for the answer the first one pays for."""
    path = tmp_path / "answers.sqlite"
    first = ModelCaller(SlowProvider(QueuedProvider("answer")), FAST, AnswerCache(path))
    second = ModelCaller(QueuedProvider(), FAST, AnswerCache(path))  # its own connection and claims

    async def run() -> list[ModelReply]:
        sending = asyncio.create_task(first.call(request("same")))
        await asyncio.sleep(0.05)
        return [await second.call(request("same")), await sending]

    waited, sent = asyncio.run(run())
    assert waited.text == sent.text == "answer" and waited.cached and second.stats.sent == 0


def test_a_claim_of_a_process_that_is_gone_or_of_long_ago_lapses(tmp_path) -> None:
    import subprocess
    import sys

    cache = AnswerCache(tmp_path / "answers.sqlite")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    other = AnswerCache(tmp_path / "answers.sqlite")
    assert other.claim("k", lease=600)
    assert not cache.claim("k", lease=600)  # held by a live process (this one, another cache object)
    assert cache.claim("k", lease=0)  # unless it is older than the lease
    with sqlite3.connect(tmp_path / "answers.sqlite") as db:  # as a killed run would have left it
        db.execute("UPDATE claims SET pid = ?, owner = 'killed', claimed = ?",
                   (int(gone.stdout), time.time()))
    assert cache.claim("k", lease=600)
    with sqlite3.connect(tmp_path / "answers.sqlite") as db:  # another host's: only the lease tells
        db.execute("UPDATE claims SET host = 'elsewhere', owner = 'theirs', claimed = ?", (time.time(),))
    assert not cache.claim("k", lease=600)
    cache.release("k")  # not this cache's claim: it stays
    assert not cache.claim("k", lease=600)


def test_claims_are_renewed_while_their_call_runs_and_lapse_when_they_are_not(tmp_path, monkeypatch) -> None:
    import augment_it.calling

    path = tmp_path / "answers.sqlite"
    holder, other = AnswerCache(path), AnswerCache(path)
    assert holder.claim("k")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE claims SET claimed = claimed - 60")  # older than the lease
    holder.renew()
    assert not other.claim("k")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE claims SET claimed = claimed - 60")
    assert other.claim("k")

    other.release("k")
    monkeypatch.setattr(augment_it.calling, "CLAIM_LEASE", 0.3)  # renewed every 0.1 s
    renewed: list[float] = []

    def claimed() -> float:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT max(claimed) FROM claims").fetchone()[0]

    class Watched(SlowProvider):  # the claim's time, before and after half a second of sending
        async def send(self, request: ModelRequest) -> ModelReply:
            before = claimed()
            await asyncio.sleep(0.5)
            renewed.append(claimed() - before)
            return await self.provider.send(request)

    caller = ModelCaller(Watched(QueuedProvider("answer")), FAST.model_copy(update={"timeout": 5}),
                         AnswerCache(path))

    async def run() -> None:
        await caller.call(request("renewed"))
        await caller.close()

    asyncio.run(run())
    assert renewed[0] >= 0.3
