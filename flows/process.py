from __future__ import annotations

import asyncio
import gc
from typing import Any

from prefect import flow
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact
from prefect.utilities.annotations import quote

from augment_it.errors import UserInputError
from augment_it.layout import RunLayout
from augment_it.pricing import PriceTable
from augment_it.processing import chunk_fingerprint
from augment_it.providers import import_keyed_sdks_in_background
from augment_it.settings import ProcessSettings
from tasks.failures import aoutcome, fails_cleanly
from tasks.preflight import forecast_calls
from tasks.process import (
    augment_chunk,
    close_model,
    load_collected,
    open_model_for_run,
    prepare_template,
    write_process_report,
)

import_keyed_sdks_in_background()  # as the stage loads, not between its start and first call

CHUNKS_IN_FLIGHT = 2  # the next chunk fills the model's slots while the last one's tail finishes


class OverBudget(UserInputError):
    """The run's projected cost is above its max cost; nothing was sent."""


@flow(name="process", log_prints=True)
@fails_cleanly
async def process(out: str, template: str, settings: ProcessSettings | None = None) -> str:
    """Augment the collected records under OUT with TEMPLATE; returns the report's URL."""
    settings = settings or ProcessSettings()
    layout = RunLayout(out)
    prompt = await aoutcome(prepare_template(template, settings, return_state=True))
    prices = PriceTable.load(settings.prices_path)  # a bad price file stops the stage before any call
    records = await load_collected(out)
    plan = await open_model_for_run(out, records, prompt, settings)
    if settings.max_cost_usd is not None and plan.caller is not None:
        forecast = await forecast_calls(out, quote(records), prompt, plan, prices, settings)
        if refusal := forecast.over_budget(settings.max_cost_usd):
            await close_model(plan)
            raise OverBudget(refusal)
    size = settings.effective_chunk_size(len(records))
    chunks = [records[i:i + size] for i in range(0, len(records), size)]
    # Created beside the first chunk rather than before it: the first call need not wait for it.
    progress = asyncio.create_task(acreate_progress_artifact(
        0.0 if chunks else 100.0, key="process-progress",
        description=f"{len(records)} records in {len(chunks)} chunks"))
    window, done = asyncio.Semaphore(CHUNKS_IN_FLIGHT), 0

    async def run_chunk(index: int, chunk: list[dict[str, Any]]) -> dict[str, Any]:
        nonlocal done
        part = layout.process_part(index, chunk_fingerprint(prompt, chunk, plan))
        async with window:
            # quote: Prefect need not walk 500 records looking for futures (60 ms a chunk).
            report = await augment_chunk(quote(chunk), part, prompt, plan, prices, rank=index,
                                         resume=settings.use_cache)
        done += 1
        await aupdate_progress_artifact(await progress, 100.0 * done / len(chunks))
        return report

    # Everything alive now (imports, Prefect, the records) lives as long as the run: freeze it
    # so full collections stop walking it, each a 0.3 s stall with every slot's answer waiting.
    gc.freeze()
    reports = await asyncio.gather(*(run_chunk(i, c) for i, c in enumerate(chunks)))
    await progress  # created even when there was no chunk to update it
    calls = await close_model(plan)
    await write_process_report(out, prompt, plan, list(reports), calls)
    if plan.caller is None:
        print(f"AI step skipped: {plan.skip_reason}")
    return layout.process_report
