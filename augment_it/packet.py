"""The review packet: what a reviewer sees before deciding, flagged records first."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from augment_it.records import (
    AI_STATUS,
    ID,
    PACKET_COLUMNS,
    PACKET_FLAGS,
    PACKET_ID,
    REASON,
    as_text,
    is_missing,
    is_system,
)
from augment_it.review import SCORE, ReviewRequest, reviewable

LOW_SCORE = 0.5
PACKET_ROWS = 200  # the table artifact stays readable; the full sheet is linked
FORM_ROWS = 10  # records shown in the pause form's description
ENRICHED = ("word_count", "reading_time_min", "language", SCORE)


def flags(record: dict[str, Any], output_fields: Iterable[str]) -> str:
    """Why a record deserves a closer look, comma-separated; empty when nothing stands out."""
    found = []
    if record.get(AI_STATUS) == "skipped":
        found.append("no model")
    else:
        empty = [f for f in output_fields if is_missing(record.get(f)) or record.get(f) == ""]
        if empty:
            found.append("empty output: " + ", ".join(empty))
    score = record.get(SCORE)
    if is_missing(score) or score < LOW_SCORE:
        found.append("low score")
    return ", ".join(found)


def key_fields(frame: pd.DataFrame, output_fields: Iterable[str], limit: int = 3) -> list[str]:
    """The first few of the record's own input fields: enough to recognise it."""
    skip = {*ENRICHED, *output_fields, *PACKET_COLUMNS}  # a source's own `id` would hide the packet's
    return [c for c in frame.columns if not is_system(c) and c not in skip
            and not str(c).startswith("review")][:limit]


def packet_rows(frame: pd.DataFrame, output_fields: list[str], ids: Iterable[str] | None = None,
                key_limit: int = 3, shorten: bool = True) -> list[dict[str, Any]]:
    """One row per record under review: id, key input fields, the AI output, score and flags.

    Flagged records come first, lowest score first within each group.
    """
    candidates = reviewable(frame)
    if ids is not None and not candidates.empty:
        candidates = candidates[candidates[ID].astype(str).isin(set(ids))]
    if candidates.empty:
        return []
    inputs = key_fields(candidates, output_fields, key_limit)
    short = _short if shorten else _same
    rows = []
    for record in candidates.to_dict(orient="records"):
        row = {PACKET_ID: str(record[ID])}
        row.update({k: short(record.get(k)) for k in inputs})
        row.update({k: short(record.get(k)) for k in output_fields})
        row[SCORE] = None if is_missing(record.get(SCORE)) else record.get(SCORE)
        row[PACKET_FLAGS] = flags(record, output_fields)
        rows.append(row)
    rows.sort(key=lambda r: (r[PACKET_FLAGS] == "", r[SCORE] if r[SCORE] is not None else -1))
    return rows


def packet_summary(frame: pd.DataFrame, rows: list[dict[str, Any]], request: ReviewRequest) -> str:
    """Markdown for the summary artifact and the pause form: counts, the first records, where the rest are."""
    failed = frame[frame[AI_STATUS] == "failed"] if not frame.empty else frame
    flagged = sum(1 for r in rows if r[PACKET_FLAGS])
    lines = [
        "## Review the augmented records",
        "",
        f"**{len(rows)}** records to review, **{flagged}** flagged; **{len(failed)}** failed "
        "and are exported as failed without review.",
    ]
    if request.approve_above is not None:
        lines += ["", f"**{len(request.auto_approved)}** records with {SCORE} above "
                      f"{request.approve_above} were approved without review."]
    if request.earlier:
        lines += ["", f"**{len(request.earlier)}** records keep the decision a reviewer made in an "
                      "earlier run (same fields, same answer) and are not shown again."]
    lines += [
        "",
        "Approve the batch, or list the ids to reject; an edit changes one field of one record.",
        *(["", hint] if (hint := labels_hint(request)) else []),
        "The table artifact `review-packet` lists them, flagged first"
        + (f" (the first {PACKET_ROWS})." if len(rows) > PACKET_ROWS else "."),
    ]
    if request.sheet:
        lines += ["", f"Full review sheet (CSV, every record): [{request.sheet}]({_file_url(request.sheet)})"
                      f" — or `augment review sheet {request.flow_run_id} > sheet.csv`, edit it, and "
                      f"`augment review approve {request.flow_run_id} --edits sheet.csv --reviewer NAME`."]
    if rows:
        shown = [_compact(row, request.output_fields) for row in rows[:FORM_ROWS]]
        lines += ["", f"### Records to review (first {len(shown)} of {len(rows)})", "",
                  _markdown_table(shown)]
    if request.timeout_seconds:
        lines += ["", f"Without a decision within {request.timeout_seconds} s the run ends as "
                      f"*review expired* with outcome **{request.timeout_outcome}**."]
    if not failed.empty:
        lines += ["", "Failed (first 5):"]
        lines += [f"- `{r[ID]}`: {r[REASON]}" for r in failed.head(5).to_dict(orient="records")]
    return "\n".join(lines)


def labels_hint(request: ReviewRequest) -> str | None:
    """What an edit of each field of labels may say, or None when the template declares none."""
    labelled = {name: spec for name, spec in request.output_specs.items() if spec.labels}
    if not labelled:
        return None
    fields = "; ".join(f"`{name}` {spec.choice()}" for name, spec in labelled.items())
    lists = ", a list's between commas" if any(spec.many for spec in labelled.values()) else ""
    return f"An edit of a field of labels names them ({fields}){lists}; a blank one clears the field."


def _compact(row: dict[str, Any], output_fields: list[str]) -> dict[str, Any]:
    """A packet row narrow enough for the form: id, the first key field, AI output, score, flags."""
    first_key = next((k for k in row if k not in (*PACKET_COLUMNS, SCORE, *output_fields)), None)
    return {k: v for k, v in row.items() if k in (*PACKET_COLUMNS, first_key, SCORE, *output_fields)}


def _markdown_table(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0])
    cells = [[_md_cell(row.get(c)) for c in columns] for row in rows]
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
                     + ["| " + " | ".join(r) + " |" for r in cells])


def _md_cell(value: Any) -> str:
    if value is None or is_missing(value):
        return ""
    return str(_short(value, 60)).replace("|", "\\|").replace("\n", " ")


def _file_url(path: str) -> str:
    return path if "://" in path else "file://" + path


def _short(value: Any, limit: int = 120) -> Any:
    if isinstance(value, list | tuple | dict):
        value = as_text(value)  # as the sheet and the exports write it, not Python's repr
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 1] + "…"
    return value


def _same(value: Any) -> Any:
    return value
