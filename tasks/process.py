"""Process-stage tasks: one task run per chunk of records, many model calls inside each.

A task per record would cost tens of milliseconds of orchestration each; a chunk amortises that
and doubles as the checkpoint: a finished chunk is a Parquet part that a rerun skips.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import quote

from augment_it import progress
from augment_it.layout import RunLayout, exists, read_frame, remove_others, write_frame, write_json
from augment_it.pricing import PriceTable
from augment_it.processing import ModelPlan, Rejection, apply_overrides, augment_records, open_plan
from augment_it.records import AI_STATUS, ID, records_frame
from augment_it.review_ledger import read_ledger, rejections
from augment_it.settings import ProcessSettings
from augment_it.templates import PromptTemplate
from blocks.providers import stored_credentials
from blocks.templates import load_prompt_template
from tasks.failures import fails_cleanly


# Async, like every stage's tasks, for the reason given in flows/collect.py.
@task(name="load-template", cache_policy=NO_CACHE)
@fails_cleanly
async def prepare_template(path: str, settings: ProcessSettings) -> PromptTemplate:
    """The template from a file or URL, or from a stored block (`block:NAME`), with overrides."""
    return apply_overrides(load_prompt_template(path), settings, origin=path)


@task(name="load-collected", cache_policy=NO_CACHE)
async def load_collected(out: str) -> list[dict[str, Any]]:
    frame = read_frame(RunLayout(out).collected)
    progress.start(len(frame))
    return plain_records(frame)


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as dicts of Python values, None where a value is missing."""
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


@task(name="open-model", cache_policy=NO_CACHE, persist_result=False)
async def open_model(template: PromptTemplate, settings: ProcessSettings) -> ModelPlan:
    """The model to call; its key from the environment, else from a credentials block."""
    stored = None if template.provider == "none" else stored_credentials(template.provider)
    return open_plan(template, settings, *(stored or ()))


async def open_model_for_run(out: str, records: list[dict[str, Any]], template: PromptTemplate,
                             settings: ProcessSettings) -> ModelPlan:
    """The model to call for RECORDS, knowing which of them a reviewer rejected answers to."""
    plan = await open_model(template, settings)
    rejected = await load_rejections(out, quote(records), template)
    return dataclasses.replace(plan, rejected=rejected, retry_rejected=settings.retry_rejected)


@task(name="load-rejections", cache_policy=NO_CACHE)
async def load_rejections(out: str, records: list[dict[str, Any]],
                          template: PromptTemplate) -> dict[str, list[Rejection]]:
    """The answers a reviewer rejected in earlier runs under OUT, for RECORDS as they read now."""
    ledger = read_ledger(out)
    return {record_id: [(template.answer_text(d.answer), d.comment) for d in chain]
            for record_id, chain in rejections(ledger, records).items()} if ledger else {}


@task(name="augment-chunk", cache_policy=NO_CACHE)
async def augment_chunk(records: list[dict[str, Any]], part: str, template: PromptTemplate,
                        plan: ModelPlan, prices: PriceTable, rank: int = 0,
                        resume: bool = True) -> dict[str, Any]:
    """Augment RECORDS into PART; RESUME (unless --no-cache) keeps what an earlier run of the same
    records and template wrote there, and asks only for the records it has no answer for."""
    done = read_frame(part) if resume and exists(part) else None
    # Without a model now, a part is resumed whole: its records could only be skipped again.
    todo = records if done is None else unanswered(done, records) if plan.caller else []
    kept = len(records) - len(todo)  # answered in this part by an earlier run: not asked again
    progress.advance(kept)
    if done is not None and not todo:
        return {**chunk_counts(done, asked=set()), "part": part, "resumed": True, "kept": kept}
    augmented = await augment_records(todo, template, plan, prices, rank)
    if done is not None:  # the part's answered records, and the others asked again
        by_id = {r[ID]: r for r in [*plain_records(done[done[AI_STATUS] == "ok"]), *augmented]}
        augmented = [by_id[r[ID]] for r in records]
    # Integer fields (the source's, the model's, token counts) with a gap stay integers.
    frame = records_frame(augmented)
    # also when all are unknown
    frame = frame.astype({c: "Int64" for c in ("_input_tokens", "_cached_input_tokens", "_output_tokens")})
    write_frame(frame, part)
    return {**chunk_counts(frame, asked={r[ID] for r in todo}), "part": part, "resumed": done is not None,
            "kept": kept}


def unanswered(done: pd.DataFrame, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The RECORDS a finished part holds without a usable answer, for a rerun to ask again: failed
    (a refused key, retries used up, an answer that did not fit) or skipped (no key back then)."""
    answered = set(done.loc[done[AI_STATUS] == "ok", ID])
    return [r for r in records if r[ID] not in answered]


def chunk_counts(frame: pd.DataFrame, asked: set[str] | None = None) -> dict[str, Any]:
    """The chunk's records by status, and what this run paid for the records it ASKED about (all
    by default) and did not answer from the cache: answers kept by a resumed part or replayed from
    the cache were paid by an earlier run, and their rows say what they cost then."""
    status = frame[AI_STATUS].value_counts().to_dict()
    paid = frame[~frame["_cached"].astype(bool)]
    if asked is not None:
        paid = paid[paid[ID].isin(asked)]
    # Tokens and cost are null together where the provider did not report usage; the totals are
    # over the other records, and how many were left out is counted beside them.
    with_usage = paid["_input_tokens"].notna()
    costs = paid.loc[with_usage, "_cost_usd"]  # null there only for a model with no price
    return {
        "records": len(frame),
        "ids": len(set(frame[ID])),
        "ok": int(status.get("ok", 0)), "failed": int(status.get("failed", 0)),
        "skipped": int(status.get("skipped", 0)),
        "input_tokens": int(paid["_input_tokens"].sum()),
        # A part written before the column existed (resumed after an upgrade) counts none.
        "cached_input_tokens": int(paid.get("_cached_input_tokens", pd.Series(dtype="Int64")).sum()),
        "output_tokens": int(paid["_output_tokens"].sum()),
        "cost_usd": None if costs.isna().any() else float(costs.sum()),
        "records_without_usage": int((~with_usage).sum()),
        "cached": int(frame["_cached"].sum()),
    }


@task(name="close-model", cache_policy=NO_CACHE)
async def close_model(plan: ModelPlan) -> dict[str, Any]:
    """Close the SDK client; return this run's call statistics."""
    if plan.caller is None:
        return {}
    await plan.caller.close()
    stats = plan.caller.stats
    return {"sent": stats.sent, "answered": stats.answered, "cache_hits": stats.cache_hits,
            "retries": stats.retries, "rate_limited": stats.rate_limited, "not_sent": stats.not_sent,
            "errors": stats.errors}


@task(name="write-process-report", cache_policy=NO_CACHE)
async def write_process_report(out: str, template: PromptTemplate, plan: ModelPlan,
                               chunks: list[dict[str, Any]], calls: dict[str, Any]) -> dict[str, Any]:
    costs = [c["cost_usd"] for c in chunks]
    report = {
        "template": {"name": template.name, "version": template.version,
                     "provider": template.provider, "model": template.model,
                     "output_fields": list(template.output_fields), "output_types": template.output_fields},
        "parts": [c["part"] for c in chunks],
        "ai": {"status": "skipped", "reason": plan.skip_reason} if plan.caller is None
        else {"status": "used", "provider": template.provider, "model": template.model},
        "records": {k: sum(c[k] for c in chunks)
                    for k in ("records", "ok", "failed", "skipped", "cached", "kept")},
        "usage": {**{k: sum(c[k] for c in chunks)
                     for k in ("input_tokens", "cached_input_tokens", "output_tokens")},
                  "cost_usd": None if any(c is None for c in costs) else round(sum(costs), 6),
                  "records_without_usage": sum(c["records_without_usage"] for c in chunks)},
        "resumed_chunks": sum(1 for c in chunks if c["resumed"]),
        # Records asked after the answers a reviewer rejected (--retry-rejected), the model shown those.
        "retried_rejected": len(plan.rejected) if plan.retry_rejected and plan.caller else 0,
        "calls": calls,
    }
    layout = RunLayout(out)
    write_json(report, layout.process_report)
    # Parts this run did not resume (records since edited, another template) would never be read.
    remove_others(layout.process_parts, report["parts"])
    return report
