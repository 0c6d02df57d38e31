"""`augment plan`: collect, then show what a run would ask the model and what it would cost.

It asks a few records first (`sample`), so that their answers can be read and their tokens
measured; those answers are cached, and the run that follows replays them for nothing.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.context import get_run_context
from prefect.utilities.annotations import quote

from augment_it.layout import RunLayout, read_json
from augment_it.pricing import PriceTable
from augment_it.run_lock import holding_run_dir
from augment_it.settings import ProcessSettings
from flows.collect import collect
from flows.pipeline import run_stage
from tasks.failures import aoutcome, fails_cleanly
from tasks.preflight import ask_sample, forecast_calls
from tasks.process import close_model, load_collected, open_model_for_run, prepare_template

SAMPLE_SIZE = 3


@flow(name="preflight", log_prints=True)
@fails_cleanly
async def preflight(source: str, template: str, out: str, id_column: str | None = None,
                    encoding: str | None = None, settings: ProcessSettings | None = None,
                    sample: int = SAMPLE_SIZE) -> dict[str, Any]:
    """Collect SOURCE under OUT, ask the model about SAMPLE records, and project the rest."""
    settings = settings or ProcessSettings()
    with holding_run_dir(out, owner=str(get_run_context().flow_run.id)):
        await run_stage(collect, "subflows", source=source, out=out, template=template, id_column=id_column,
                        encoding=encoding)
        prompt = await aoutcome(prepare_template(template, settings, return_state=True))
        prices = PriceTable.load(settings.prices_path)
        records = await load_collected(out)
        model = await open_model_for_run(out, records, prompt, settings)
        answers = await ask_sample(quote(records), prompt, model, prices, settings, sample)
        forecast = await forecast_calls(out, quote(records), prompt, model, prices, settings)
        await close_model(model)
    collected = read_json(RunLayout(out).validation_report)
    return {"collected": collected["counts"], "quarantine_reasons": collected["quarantine_reasons"],
            "sample": answers, "preflight": forecast.model_dump()}
