"""Augment records: render each prompt, call the model, parse the answer, add the fields.

Every record comes out with `_ai_status` ok, failed (with `_reason`) or skipped (no model),
so a failure is always one record's, never the run's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from augment_it import progress
from augment_it.cache import AnswerCache
from augment_it.calling import ModelCaller, call_rank
from augment_it.enrichers import ENRICHED_FIELDS, enrich, language_model_ready, load_language_model
from augment_it.pricing import PriceTable
from augment_it.providers import make_provider, provider_spec
from augment_it.providers.base import MissingKeyError, ModelReply, ModelRequest, ProviderError
from augment_it.records import AI_STATUS, ID, RAW_ANSWER, REASON, is_system
from augment_it.settings import ProcessSettings
from augment_it.templates import PromptTemplate, RenderError, TemplateError

logger = logging.getLogger(__name__)


Rejection = tuple[str, str]  # an answer a reviewer rejected, as the model gave it, and their comment


@dataclass(frozen=True)
class ModelPlan:
    """How a run will use a model: a caller, or why it runs without one."""

    caller: ModelCaller | None
    skip_reason: str | None = None
    # By record id, the answers a reviewer rejected, oldest first; each was asked after the ones before.
    rejected: dict[str, list[Rejection]] = field(default_factory=dict)
    retry_rejected: bool = False  # ask again after the last rejected answer where nothing answered that yet


def build_request(template: PromptTemplate, record: dict[str, Any]) -> ModelRequest:
    system, prompt = template.render(record)
    if template.structured:
        fields = ", ".join(f"{template.answer_keys[name]} ({spec.describe()})"
                           for name, spec in template.output_specs.items())
        instruction = f"Answer with a JSON object with exactly these fields: {fields}."
        system = f"{system}\n\n{instruction}" if system else instruction
    return ModelRequest(provider=template.provider, model=template.model, system=system,
                        messages=(*template.example_turns, ("user", prompt)), schema=template.json_schema(),
                        schema_name=template.text_field[:64], temperature=template.temperature,
                        max_tokens=template.max_tokens, top_p=template.top_p,
                        cache_system=template.static_system)


def request_for(template: PromptTemplate, record: dict[str, Any], plan: ModelPlan) -> ModelRequest:
    """RECORD's request: its prompt, and after it, where a reviewer rejected answers to it, each of
    those answers and what the reviewer said. Up to the last one when the plan retries rejected
    records; else up to the newest the cache answers, so that a rejection not yet retried stands and
    an answer given after one (and approved) is kept."""
    requests = [build_request(template, record)]
    for answer, comment in plan.rejected.get(str(record.get(ID)), []):
        requests.append(requests[-1].after_rejection(answer, comment))
    if plan.retry_rejected:
        return requests[-1]
    cache = plan.caller.cache if plan.caller is not None else None
    if cache is None:
        return requests[0]
    return next((r for r in reversed(requests[1:]) if cache.get(r.key()) is not None), requests[0])


def chunk_fingerprint(template: PromptTemplate, records: list[dict[str, Any]],
                      plan: ModelPlan | None = None) -> str:
    """Names a chunk's checkpoint: the same template, model and records give the same part file.

    Records count with every value, not only their ids: a record edited since, or another file's
    record under the same id, must not be resumed with an answer about something else."""
    digest = hashlib.sha256("\n".join([template.provider, template.model, template.version]).encode())
    digest.update(json.dumps(records, sort_keys=True, default=_as_json, ensure_ascii=False).encode())
    # A part kept from a run that did not ask after a rejection would be resumed with the rejected answer.
    ids = [str(r.get(ID)) for r in records]
    if plan is not None and (rejected := [plan.rejected[i] for i in ids if i in plan.rejected]):
        digest.update(json.dumps([plan.retry_rejected, rejected], ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _as_json(value: Any) -> Any:
    # A list read back from Parquet is a numpy array, whose str() elides the middle of a long one.
    return value.tolist() if hasattr(value, "tolist") else str(value)


async def augment_records(records: list[dict[str, Any]], template: PromptTemplate,
                          plan: ModelPlan, prices: PriceTable, rank: int = 0) -> list[dict[str, Any]]:
    """Augment RECORDS; RANK orders this batch's calls against other batches waiting for a slot."""
    # What the record brought, not what a previous run wrote back onto it (a store round trip
    # returns the AI fields and enrichers as columns; they must not count as input).
    produced = {*template.output_fields, *ENRICHED_FIELDS}
    input_fields = [k for k in records[0] if not is_system(k) and k not in produced] \
        if records else []
    load_language_model()  # in the background, while the first calls wait on the network
    # As many workers as model slots, each rendering its next record just before asking: a
    # coroutine per record would render every prompt of the chunk before the first call left.
    augmented: list[dict[str, Any]] = [{} for _ in records]
    pending = iter(range(len(records)))  # shared: each index goes to exactly one worker

    async def worker() -> None:
        call_rank.set(rank)  # each worker is its own asyncio task, with its own context
        for index in pending:
            augmented[index] = await _augment_one(records[index], template, plan, prices, input_fields)

    slots = plan.caller.policy.concurrency if plan.caller is not None else 1
    await asyncio.gather(*(worker() for _ in range(min(slots, len(records)))))
    return augmented


async def _augment_one(record: dict[str, Any], template: PromptTemplate, plan: ModelPlan,
                       prices: PriceTable, input_fields: list[str]) -> dict[str, Any]:
    out = dict(record)
    out.update({"_provider": template.provider, "_model": template.model,
                "_template": template.name, "_template_version": template.version})
    # An output field the record already has (one being corrected, or an answer a store round trip
    # brought back) keeps its value until an answer replaces it: a skipped or failed record loses nothing.
    out.update({name: record.get(name) for name in template.output_fields})
    out.update({"_input_tokens": 0, "_cached_input_tokens": 0, "_output_tokens": 0, "_cost_usd": 0.0,
                "_cached": False, "_calls": 0, RAW_ANSWER: None, REASON: None})
    if plan.caller is None:
        out[AI_STATUS], out[REASON] = "skipped", plan.skip_reason
    else:
        try:
            await _ask_model(out, record, template, plan, prices)
        except Exception as exc:  # a bug, or an answer shaped as nobody foresaw: the record's, not the run's
            logger.exception("record %s failed unexpectedly", record.get(ID))
            out[AI_STATUS], out[REASON] = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
    await language_model_ready()  # enrich would block the event loop until it has loaded
    out.update(enrich(out, input_fields, out[AI_STATUS]))
    progress.advance()
    return out


async def _ask_model(out: dict[str, Any], record: dict[str, Any], template: PromptTemplate,
                     plan: ModelPlan, prices: PriceTable) -> None:
    caller = plan.caller
    assert caller is not None
    try:
        request = request_for(template, record, plan)
    except RenderError as exc:
        out[AI_STATUS], out[REASON] = "failed", str(exc)
        return
    reason, asked = "", []
    for attempt in range(2):  # the answer, then one repair if it is empty or does not fit the schema
        try:
            reply = await caller.call(request)
        except ProviderError as exc:
            out[AI_STATUS], out[REASON] = "failed", f"{exc} (after retries)" if exc.retryable else str(exc)
            return
        asked.append(request.key())
        _add_usage(out, reply, template, prices)
        if reply.incomplete:  # a repair would be cut off or refused the same way
            reason, out[RAW_ANSWER] = reply.incomplete, reply.text
            break
        try:
            answer = template.parse_answer(reply.text)
        except ValueError as exc:
            reason, out[RAW_ANSWER] = f"{exc} (also after one repair attempt)", reply.text
            if attempt == 0:
                request = request.repair(reply.text, str(exc))
            continue
        # null is a field the model did not know ('integer or null'): what the record had stands.
        out.update({name: value for name, value in answer.items() if value is not None})
        out[AI_STATUS], out[RAW_ANSWER] = "ok", None
        return
    out[AI_STATUS], out[REASON] = "failed", reason
    if caller.cache is not None:
        for key in asked:  # unusable answers: a rerun asks again instead of replaying them
            caller.cache.forget(key)


def _add_usage(out: dict[str, Any], reply: ModelReply, template: PromptTemplate,
               prices: PriceTable) -> None:
    # A row says what its answer cost, also when an earlier run paid for it (`_cached`; the cache
    # keeps its tokens, priced now). What this run paid is summed apart (tasks/process.py).
    out["_cached"] = reply.cached
    if not reply.cached:
        out["_calls"] += 1
    if out["_input_tokens"] is None or reply.input_tokens is None or reply.output_tokens is None:
        # One call of unknown size makes the record's usage unknown: a part of it would read as all.
        out["_input_tokens"] = out["_cached_input_tokens"] = out["_output_tokens"] = out["_cost_usd"] = None
        return
    out["_input_tokens"] += reply.input_tokens
    out["_cached_input_tokens"] += reply.cached_input_tokens
    out["_output_tokens"] += reply.output_tokens
    cost = prices.cost(template.model, reply.input_tokens, reply.output_tokens, reply.cached_input_tokens,
                       reply.cache_write_tokens)
    out["_cost_usd"] = None if cost is None or out["_cost_usd"] is None else out["_cost_usd"] + cost


def open_plan(template: PromptTemplate, settings: ProcessSettings, api_key: str | None = None,
              base_url: str | None = None) -> ModelPlan:
    """A caller for the template's provider, or the reason the run goes on without a model.

    API_KEY and BASE_URL are stored credentials (a Prefect block, looked up by the task); without
    them the provider's environment variables apply."""
    if template.provider == "none":
        return ModelPlan(None, "no model requested (provider 'none'); only built-in enrichers ran")
    try:
        provider = make_provider(template.provider, api_key=api_key, base_url=base_url,
                                 timeout=settings.call.timeout, connections=settings.call.concurrency)
    except MissingKeyError as exc:
        return ModelPlan(None, str(exc))
    cache = AnswerCache(settings.cache_path) if settings.use_cache else None
    # Limits belong to a provider and model, so a template may carry them; options override.
    limits = {"rpm": settings.call.rpm or template.rpm, "tpm": settings.call.tpm or template.tpm}
    return ModelPlan(ModelCaller(provider, settings.call.model_copy(update=limits), cache))


def apply_overrides(template: PromptTemplate, settings: ProcessSettings, origin: str) -> PromptTemplate:
    """The template with the run's provider and model; fails, naming ORIGIN (the template's
    file or block), on what that provider would refuse, before any record is sent."""
    updates = {k: v for k, v in {"provider": settings.provider, "model": settings.model}.items() if v}
    template = template.model_copy(update=updates) if updates else template
    if template.provider != "none":
        spec = provider_spec(template.provider)  # an unknown name fails here, before any record
        values = template.model_dump()
        problems = [f"{name} {values[name]} is outside {low}-{high}, the range {template.provider} accepts"
                    for name, (low, high) in spec.out_of_range(values).items()]
        if both := spec.conflicting(values):
            problems.append(f"{' and '.join(both)} are both set; {template.provider} takes only one of them")
        if problems:
            raise TemplateError(f"template {origin}: {'; '.join(problems)}")
    return template
