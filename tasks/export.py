"""Export-stage tasks: apply the review decision and write one file per outcome."""

from __future__ import annotations

import json
from typing import Any, get_args

import pandas as pd
from prefect import task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE

import blocks.connectors  # noqa: F401  (lets ?block=NAME in a destination URI load a Prefect block)
from augment_it.export import OUTCOMES, destination_sink, split_outcomes, summarize, summary_markdown
from augment_it.layout import RunLayout, read_frame, read_json, remove, write_frame, write_json, write_text
from augment_it.output_types import output_specs
from augment_it.review import ReviewDecision, apply_decision, review_report
from augment_it.settings import ExportFormat
from blocks.templates import load_prompt_template
from tasks.failures import fails_cleanly
from tasks.review import output_fields, read_processed


@task(name="apply-decision", cache_policy=NO_CACHE)
async def apply_review(out: str) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    layout = RunLayout(out)
    processed = read_processed(out)
    decision = ReviewDecision.model_validate(read_json(layout.decision))
    _, declared = output_fields(out)
    reviewed, audit = apply_decision(processed, decision, output_specs(declared))
    return processed, reviewed, audit


@task(name="write-outcomes", cache_policy=NO_CACHE)
@fails_cleanly  # what a format cannot hold whole (a workbook's cell limit) goes to the run's log
async def write_outcomes(out: str, processed: pd.DataFrame, reviewed: pd.DataFrame,
                         fmt: str) -> dict[str, pd.DataFrame]:
    layout = RunLayout(out)
    outcomes = split_outcomes(processed, reviewed, read_frame(layout.quarantine))
    for name in OUTCOMES:
        write_frame(outcomes[name], layout.export(name, fmt), fmt)
        # An earlier run's files in another format would hold records this run does not export.
        for other in get_args(ExportFormat):
            if other != fmt:
                remove(layout.export(name, other))
    return outcomes


@task(name="write-decisions-log", cache_policy=NO_CACHE)
async def write_decisions_log(out: str, audit: list[dict[str, Any]]) -> None:
    write_text("".join(json.dumps(row, default=str) + "\n" for row in audit), RunLayout(out).decisions_log)


@task(name="write-summary", cache_policy=NO_CACHE)
async def write_summary(out: str, outcomes: dict[str, pd.DataFrame], processed: pd.DataFrame,
                        fmt: str) -> dict[str, Any]:
    layout = RunLayout(out)
    summary = summarize(outcomes, processed, read_json(layout.process_report))
    summary["files"] = {name: layout.export(name, fmt) for name in OUTCOMES}
    summary["review"] = review_report(ReviewDecision.model_validate(read_json(layout.decision)))
    write_json(summary, layout.summary)
    await acreate_markdown_artifact(key="export-summary", description="What the run exported",
                                    markdown=summary_markdown(summary))
    return summary


@task(name="check-destination", cache_policy=NO_CACHE)
@fails_cleanly
async def check_destination(uri: str, template: str) -> None:
    """Refuse a destination that cannot be written (unknown scheme, malformed URI, no credentials,
    no field for an answer) before any model call is paid for; the CLI checks the same before it
    starts a flow."""
    destination_sink(uri, list(load_prompt_template(template).output_fields)).check()


@task(name="write-to-destination", cache_policy=NO_CACHE)  # each sink retries its own requests
@fails_cleanly
async def write_to_destination(out: str, uri: str, exported: pd.DataFrame,
                               summary: dict[str, Any]) -> dict[str, Any]:
    """Write the approved records' augmented fields back to the destination URI (see
    `augment_it.export.destination_sink` for which); counts go in summary.json."""
    layout = RunLayout(out)
    template = read_json(layout.process_report).get("template", {})
    counts = destination_sink(uri, template.get("output_fields", [])).write(exported)
    summary = {**summary, "destination": {"uri": uri, **counts}}
    write_json(summary, layout.summary)
    await acreate_markdown_artifact(
        key="export-destination", description="Records written back to the destination",
        markdown="\n".join(["# Destination", "", f"`{uri}`", "", "| written | records |", "|---|---|",
                            f"| updated | {counts['updated']} |", f"| created | {counts['created']} |",
                            f"| failed | {counts['failed']} |"]
                           + ([""] + [f"- {e}" for e in counts["errors"]] if counts["errors"] else [])),
    )
    if counts["failed"]:
        print(f"{counts['failed']} record(s) could not be written to {uri}; see summary.json")
    return summary
