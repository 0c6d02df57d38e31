"""Pre-flight tasks: project a run's calls and cost, and ask a few records to measure them."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

from augment_it.cache import AnswerCache
from augment_it.layout import RunLayout, write_json
from augment_it.preflight import Preflight, preflight, records_to_ask
from augment_it.pricing import PriceTable
from augment_it.processing import ModelPlan, augment_records
from augment_it.records import AI_STATUS, ID, REASON
from augment_it.settings import ProcessSettings
from augment_it.templates import PromptTemplate


@task(name="preflight", cache_policy=NO_CACHE)
async def forecast_calls(out: str, records: list[dict[str, Any]], template: PromptTemplate, model: ModelPlan,
                         prices: PriceTable, settings: ProcessSettings) -> Preflight:
    """What a run would ask and cost; kept under OUT and shown as an artifact."""
    cache = _cache(model, settings)
    forecast = preflight(records, template, prices, cache, model)
    write_json(forecast.model_dump(), RunLayout(out).preflight)
    await acreate_markdown_artifact(markdown=forecast.markdown(), key="preflight",
                                    description="What the run would ask the model, and its cost")
    return forecast


@task(name="ask-sample", cache_policy=NO_CACHE)
async def ask_sample(records: list[dict[str, Any]], template: PromptTemplate, model: ModelPlan,
                     prices: PriceTable, settings: ProcessSettings, size: int) -> list[dict[str, Any]]:
    """Ask the model about the first SIZE records it has no answer for, to see its answers and
    measure their tokens; the answers are cached, so the run that follows does not pay again."""
    if model.caller is None or size <= 0:
        return []
    sample = records_to_ask(records, template, model, size)
    rows = await augment_records(sample, template, model, prices) if sample else []
    shown = [ID, AI_STATUS, *template.output_fields, REASON, "_cost_usd"]
    return [{name: row.get(name) for name in shown} for row in rows]


def _cache(model: ModelPlan, settings: ProcessSettings) -> AnswerCache | None:
    if model.caller is not None:
        return model.caller.cache
    return AnswerCache(settings.cache_path) if settings.use_cache else None
