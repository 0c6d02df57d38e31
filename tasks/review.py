"""Review-stage tasks: load what was processed, show it to a reviewer, keep the decision."""

from __future__ import annotations

from uuid import UUID

import pandas as pd
from prefect import get_client, task
from prefect.artifacts import acreate_link_artifact, acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelled

from augment_it.layout import RunLayout, read_json, write_json, write_text
from augment_it.output_types import OutputKind
from augment_it.packet import PACKET_ROWS, packet_rows, packet_summary
from augment_it.review import (
    ReviewDecision,
    ReviewRequest,
    TimeoutOutcome,
    auto_decision,
    decisions_to_keep,
    read_processed,
    review_sheet_path,
    reviewable,
    split_by_score,
)
from augment_it.review_ledger import EarlierDecision, keyed, read_ledger, still_valid, write_ledger
from augment_it.sheet import review_sheet, sheet_csv


def output_fields(out: str) -> tuple[list[str], dict[str, OutputKind]]:
    """The fields the template fills, and the types it declares for them."""
    template = read_json(RunLayout(out).process_report)["template"]
    return list(template["output_fields"]), template.get("output_types", {})


@task(name="load-processed", cache_policy=NO_CACHE)
async def load_processed(out: str) -> pd.DataFrame:
    return read_processed(out)


@task(name="earlier-decisions", cache_policy=NO_CACHE)
async def earlier_decisions(out: str, frame: pd.DataFrame) -> list[EarlierDecision]:
    """A human's decisions from earlier runs under OUT on records that read as they did then."""
    return still_valid(read_ledger(out), reviewable(frame))  # a record that failed now is not up for review


@task(name="decide-automatically", cache_policy=NO_CACHE)
async def decide_automatically(frame: pd.DataFrame, approve_above: float | None) -> ReviewDecision:
    return auto_decision(frame, approve_above)


@task(name="request-review", cache_policy=NO_CACHE)
async def request_review(out: str, frame: pd.DataFrame, flow_run_id: str, api_url: str | None,
                         approve_above: float | None, timeout_seconds: int,
                         timeout_outcome: TimeoutOutcome, earlier: list[str]) -> ReviewRequest:
    """Split auto-approved from human-reviewed records, write the full sheet and pending.json."""
    auto_ids, human_ids = split_by_score(frame, approve_above)
    fields, types = output_fields(out)
    sheet = review_sheet(frame, fields, human_ids)
    request = ReviewRequest(
        flow_run_id=flow_run_id, api_url=api_url, to_review=human_ids, auto_approved=auto_ids,
        earlier=earlier, flagged=int((sheet["flags"] != "").sum()) if not sheet.empty else 0,
        failed=len(frame) - len(auto_ids) - len(human_ids), approve_above=approve_above,
        output_fields=fields, output_types=types, sheet=review_sheet_path(out),
        timeout_seconds=timeout_seconds, timeout_outcome=timeout_outcome,
    )
    write_text(sheet_csv(sheet), request.sheet)
    write_json(request.model_dump(), RunLayout(out).pending_review)
    return request


@task(name="publish-review-packet", cache_policy=NO_CACHE)
async def publish_review_packet(frame: pd.DataFrame, request: ReviewRequest) -> str:
    """Publish the table, summary and sheet-link artifacts; return the summary for the pause form."""
    rows = packet_rows(frame, request.output_fields, request.to_review)
    summary = packet_summary(frame, rows, request)
    if rows:
        await acreate_table_artifact(table=rows[:PACKET_ROWS], key="review-packet",
                                     description=f"{len(rows)} records awaiting review, flagged first"
                                     + (f" (first {PACKET_ROWS}; all in the review sheet)"
                                        if len(rows) > PACKET_ROWS else ""))
    await acreate_markdown_artifact(markdown=summary, key="review-summary", description="What to review")
    if request.sheet:
        link = request.sheet if "://" in request.sheet else f"file://{request.sheet}"
        await acreate_link_artifact(link=link, link_text="review sheet (CSV)", key="review-sheet",
                                    description="Every record awaiting review; edit and submit with "
                                                "`augment review approve RUN --edits sheet.csv`")
    return summary


@task(name="save-decision", cache_policy=NO_CACHE)
async def save_decision(out: str, decision: ReviewDecision, frame: pd.DataFrame,
                        shown_ids: list[str]) -> str:
    """Write decision.json, and keep a human's decision in the ledger for reruns."""
    layout = RunLayout(out)
    write_json(decision.model_dump(), layout.decision)
    if kept := decisions_to_keep(decision, frame, shown_ids, output_fields(out)[0]):
        write_ledger(out, read_ledger(out) | keyed(kept))
    return layout.decision


async def cancel_abandoned_review(out: str, reason: str) -> None:
    """Cancel the review run of OUT (its pending.json) if it still waits while the process that
    would act on the decision is gone or going: `augment review` showed it waiting and took a
    decision that went nowhere."""
    try:
        run_id = UUID(str(read_json(RunLayout(out).pending_review)["flow_run_id"]))
    except (OSError, ValueError, KeyError, TypeError):
        return  # no review was reached (or its file is not ours to read)
    async with get_client() as client:
        try:
            run = await client.read_flow_run(run_id)
        except ObjectNotFound:  # a run on another server (an earlier temporary one's database)
            return
        if run.state is not None and run.state.is_paused():
            await client.set_flow_run_state(run_id, Cancelled(message=reason), force=True)
