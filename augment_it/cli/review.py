"""`augment review`: see what paused runs wait for, and give them a decision from a shell."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import pandas as pd
import typer
from pydantic import ValidationError

from augment_it.cli import review_client
from augment_it.cli.terminal import console, fail
from augment_it.errors import UserInputError
from augment_it.packet import labels_hint, packet_rows
from augment_it.review import (
    ReviewInput,
    ReviewRequest,
    decision_problems,
    read_processed,
    read_request,
    undecided,
)
from augment_it.sheet import read_edits, review_sheet, sheet_csv, write_sheet_workbook

app = typer.Typer(help="Review runs that are waiting for a decision.", no_args_is_help=True)
T = TypeVar("T")
RunId = Annotated[str, typer.Argument(help="Id of the paused review flow run (`augment review list`)")]
Reviewer = Annotated[str, typer.Option(help="Your name, kept with the decision")]
Comment = Annotated[str, typer.Option(help="Why, for the audit trail")]


@app.command(name="list")
def list_runs() -> None:
    """Runs waiting for review, oldest first, with their counts and how long they have waited."""
    runs = _call(review_client.paused_reviews())
    if not runs:
        console.print("no runs are waiting for review")
        return
    rows = []
    for run in runs:
        request = _request_or_none(run.out)
        counts = ((len(request.to_review), request.flagged, len(request.auto_approved))
                  if request else ("?", "?", "?"))
        rows.append((run.id, run.name, *counts, age(run.age_seconds()), run.out or "?"))
    table = pd.DataFrame(rows, columns=["run id", "name", "to review", "flagged", "auto-approved",
                                        "waiting", "out"])
    typer.echo(table.to_string(index=False))


@app.command()
def show(run_id: RunId, rows: Annotated[int, typer.Option(help="Records to list")] = 20) -> None:
    """What a run waits for: counts, the records under review (flagged first), how to decide."""
    run = _call(review_client.read_review_run(run_id))
    request, frame = _run_data(run)
    typer.echo(f"run {run.id} ({run.name}): {run.state} for {age(run.age_seconds())}; out: {run.out}")
    threshold = f" (quality_score > {request.approve_above})" if request.approve_above is not None else ""
    typer.echo(f"{len(request.to_review)} records to review, {request.flagged} flagged, "
               f"{len(request.auto_approved)} auto-approved{threshold}, {request.failed} failed"
               + (f", {len(request.earlier)} keep an earlier run's decision" if request.earlier else ""))
    if hint := labels_hint(request):
        typer.echo(hint.replace("`", ""))
    records = packet_rows(frame, request.output_fields, request.to_review)
    if records:
        typer.echo(f"\nrecords under review, flagged first ({min(rows, len(records))} of {len(records)}):")
        typer.echo(pd.DataFrame(records[:rows]).fillna("").to_string(index=False, max_colwidth=40))
    if run.paused:
        typer.echo(f"\ndecide: augment review approve {run.id} --reviewer NAME [--reject ID ...] "
                   f"[--edits sheet.csv]   (sheet: augment review sheet {run.id} > sheet.csv, or "
                   f"--xlsx sheet.xlsx for Excel)")


@app.command()
def sheet(run_id: RunId, xlsx: Annotated[str | None, typer.Option(
        "--xlsx", help="Write it as an Excel workbook at this path, every cell text (Excel rewrites none)",
)] = None) -> None:
    """Print the review sheet (CSV) to fill in: set `decision` to reject, change cells to edit them."""
    run = _call(review_client.read_review_run(run_id))
    request, frame = _run_data(run)
    rows = review_sheet(frame, request.output_fields, request.to_review)
    if xlsx:
        write_sheet_workbook(rows, xlsx)
        typer.echo(f"wrote {xlsx}: fill it in, then augment review approve {run_id} --reviewer NAME "
                   f"--edits {xlsx}")
    else:
        sys.stdout.write(sheet_csv(rows))


@app.command()
def approve(
    run_id: RunId,
    reviewer: Reviewer,
    reject: Annotated[list[str] | None, typer.Option(help="Id of a record to reject (repeatable)")] = None,
    edits: Annotated[str | None, typer.Option(
        help="A filled-in review sheet (.csv or .xlsx) or a JSON list of {id, field, value}")] = None,
    comment: Comment = "",
) -> None:
    """Approve the records under review, except those rejected here or in the sheet; apply the edits."""
    run = _call(review_client.read_review_run(run_id))
    reject_ids, changes = list(reject or []), []
    data = None
    if edits:
        data = _run_data(run)
        sheet_changes = _guard(lambda: read_edits(edits, data[1]))
        if sheet_changes.problems:
            fail(f"{edits}: " + "; ".join(sheet_changes.problems))
        reject_ids += [i for i in sheet_changes.reject_ids if i not in reject_ids]
        changes = sheet_changes.edits
    given = _guard(lambda: ReviewInput(approve=True, reject_ids=reject_ids, edits=changes,
                                       reviewer=reviewer, comment=comment))
    _check(given, run, data)
    _call(review_client.submit(run.id, given))
    console.print(f"approved run {run.id}: {len(reject_ids)} rejected, {len(changes)} edits")


@app.command()
def reject(run_id: RunId, reviewer: Reviewer, comment: Comment = "") -> None:
    """Reject every record under review."""
    given = _guard(lambda: ReviewInput(approve=False, reviewer=reviewer, comment=comment))
    _call(review_client.submit(run_id, given))
    console.print(f"rejected run {run_id}")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    if minutes < 1:
        return f"{int(seconds)}s"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m" if hours < 24 else f"{hours // 24}d {hours % 24}h"


def _check(given: ReviewInput, run: review_client.ReviewRun,
           data: tuple[ReviewRequest, pd.DataFrame] | None) -> None:
    """Refuse here what the run would refuse (unknown ids or fields), when its data is readable."""
    if data is None:
        try:
            data = _read_run_data(run.out) if run.out else None
        except (OSError, ValueError, KeyError):
            return  # the run checks again and pauses anew with the reason
    if data is not None and (problems := decision_problems(given, data[1], data[0].earlier,
                                                           data[0].output_specs)):
        fail("; ".join(problems))


def _run_data(run: review_client.ReviewRun) -> tuple[ReviewRequest, pd.DataFrame]:
    """What the run asks for and the records it asks about, or fail saying why they are unreadable."""
    if not run.out:
        fail(f"flow run {run.id} has no 'out' parameter: cannot find its records")
    try:
        return _read_run_data(run.out)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"cannot read the review data of run {run.id} under {run.out}: {exc}")


def _read_run_data(out: str) -> tuple[ReviewRequest, pd.DataFrame]:
    request = read_request(out)
    return request, undecided(read_processed(out), request.earlier)


def _request_or_none(out: str | None) -> ReviewRequest | None:
    try:
        return read_request(out) if out else None
    except (OSError, ValueError, KeyError):
        return None


def _call(coroutine: Coroutine[Any, Any, T]) -> T:
    return _guard(lambda: asyncio.run(coroutine))


def _guard(action: Callable[[], T]) -> T:
    """Run the action; a user error or an invalid value ends the command with one sentence."""
    try:
        return action()
    except UserInputError as exc:
        fail(str(exc))
    except ValidationError as exc:  # e.g. an empty --reviewer
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")



