"""`augment plan`: what `augment run` would ask the model and what it would cost, before it does."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

import typer
from rich.markup import escape

from augment_it.cli.options import (
    ConcurrencyOpt,
    EncodingOpt,
    IdColumnOpt,
    ModelOpt,
    NoCacheOpt,
    OutOpt,
    PricesOpt,
    ProviderOpt,
    RetryRejectedOpt,
    SourceArg,
    TemplateOpt,
    UrlColumnOpt,
    call_policy,
    run_directory,
    source_and_encoding,
)
from augment_it.cli.run import check_inputs, import_run_libraries
from augment_it.cli.terminal import console, fail
from augment_it.errors import UserInputError
from augment_it.export import shown_reason
from augment_it.preflight import Preflight
from augment_it.records import AI_STATUS, ID
from augment_it.settings import ProcessSettings


def plan(
    source: SourceArg,
    template: TemplateOpt,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    out: OutOpt = "out",
    sample: Annotated[int, typer.Option(
        min=0, help="Records to ask first, to read their answers and measure their tokens (cached: the "
                    "run does not pay for them again)")] = 3,
    concurrency: ConcurrencyOpt = 16,
    id_column: IdColumnOpt = None,
    no_cache: NoCacheOpt = False,
    prices: PricesOpt = None,
    retry_rejected: RetryRejectedOpt = False,
    url_column: UrlColumnOpt = None,
    encoding: EncodingOpt = None,
) -> None:
    """Collect SOURCE, ask about a sample, and project what `augment run` would ask and cost."""
    source, encoding = source_and_encoding(source, url_column, encoding)
    settings = ProcessSettings(provider=provider, model=model, use_cache=not no_cache, prices_path=prices,
                               call=call_policy(concurrency=concurrency), retry_rejected=retry_rejected)
    provider = check_inputs(source, template, settings, out)
    from augment_it.cli.local_server import prefect_api
    from flows.preflight import preflight

    run_dir = run_directory(out)
    try:
        with prefect_api(while_starting=partial(import_run_libraries, provider)):
            state = asyncio.run(preflight(source=source, template=template, out=run_dir, id_column=id_column,
                                          encoding=encoding, settings=settings, sample=sample,
                                          return_state=True))
    except UserInputError as exc:  # no temporary server could start
        fail(str(exc))
    if not state.is_completed():
        fail(str(state.message))
    print_plan(state.result(), cached=not no_cache)


def print_plan(result: dict[str, Any], cached: bool) -> None:
    counts = result["collected"]
    console.print(f"collected {counts['valid'] + counts['quarantined']} record(s), {counts['quarantined']} "
                  "of them quarantined")
    for reason in result["quarantine_reasons"]:
        console.print(f"  quarantined: {shown_reason(reason)}", markup=False)
    if result["sample"]:
        print_sample(result["sample"], cached)
    forecast = Preflight.model_validate(result["preflight"])
    if forecast.skipped:
        console.print(f"[yellow]no call will be made:[/yellow] {escape(forecast.skipped)}")
    console.print(f"{forecast.records} record(s) to process: {forecast.answered} answered before (free), "
                  f"{forecast.to_ask} to ask, {forecast.unrenderable} whose prompt cannot render")
    for reason in forecast.unrenderable_reasons:
        console.print(f"  cannot render: {reason}", markup=False)
    if forecast.to_ask:
        console.print(f"projected for {forecast.provider} / {forecast.model}: {forecast.projection()}",
                      markup=False)
    for prompt in forecast.prompts:
        console.rule(f"prompt of record {escape(prompt.id)}", align="left")
        if prompt.system:
            console.print(f"[dim]{escape(prompt.system)}[/dim]")
        console.print(prompt.prompt, markup=False)
    if forecast.to_ask and not forecast.skipped:
        console.print("`augment run` with the same options asks these; [bold]--max-cost USD[/bold] refuses "
                      "to start its calls if they are projected to cost more.")


def print_sample(rows: list[dict[str, Any]], cached: bool) -> None:
    paid = sum(row["_cost_usd"] or 0 for row in rows)
    kept = "cached: the run replays these answers for nothing" if cached \
        else "not cached (--no-cache): a run asks again"
    console.print(f"asked {len(rows)} record(s) first, for ${paid:.4f} ({kept}):")
    for row in rows:
        values = {k: v for k, v in row.items() if k not in (ID, AI_STATUS, "_cost_usd") and v is not None}
        shown = ", ".join(f"{k}={_cut(str(v))}" for k, v in values.items())
        console.print(f"  {row[ID]}: {row[AI_STATUS]}  {shown}", markup=False)


def _cut(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"
