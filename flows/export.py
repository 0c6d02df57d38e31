from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.utilities.annotations import quote

from augment_it.settings import ExportFormat
from tasks.export import (
    apply_review,
    write_decisions_log,
    write_outcomes,
    write_summary,
    write_to_destination,
)
from tasks.failures import aoutcome, fails_cleanly


@flow(name="export", log_prints=True)  # async for the reason given in flows/collect.py
@fails_cleanly
async def export(out: str, fmt: ExportFormat = "parquet", destination: str | None = None) -> dict[str, Any]:
    """Write approved, rejected, quarantined and failed records under OUT, and summary.json;
    with DESTINATION (a store URI), also write the approved records back to it."""
    processed, reviewed, audit = await apply_review(out)
    outcomes = await write_outcomes(out, processed, reviewed, fmt)
    await write_decisions_log(out, quote(audit))  # Prefect need not walk a row per record (0.13 s)
    summary = await write_summary(out, outcomes, processed, fmt)
    if destination:
        summary = await aoutcome(write_to_destination(out, destination, outcomes["exported"], summary,
                                                      return_state=True))
    return summary
