"""Review decisions: what a reviewer approves, rejects and edits, and applying that to records.

Failed records are never up for review (they are exported as failed); everything else is
either approved or rejected by a decision, and nothing unapproved is exported. A decision has
up to three sources: the score policy (`--approve-above`), a human (form, CLI or sheet), or
the timeout outcome when no human answered in time. A human's decision is also kept for reruns
(review_ledger.py), and applies again to a record that reads as it did. Each record's review
columns and the audit rows say which one decided it.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from augment_it.layout import RunLayout, read_frame, read_json
from augment_it.output_types import OutputKind, OutputSpec, matching_label, output_specs
from augment_it.records import (
    AI_STATUS,
    ID,
    REVIEW_COLUMNS,
    REVIEW_COMMENT,
    REVIEW_STATUS,
    REVIEWED_AT,
    REVIEWED_BY,
    as_text,
    is_missing,
    is_system,
    plain,
)
from augment_it.review_ledger import EarlierDecision, fingerprints

SCORE = "quality_score"
AUTO_REVIEWER = "auto"
EXPIRED_REVIEWER = "(review expired)"
EARLIER = "earlier"  # the audit's source of a decision kept from an earlier run

TimeoutOutcome = Literal["reject-all", "approve-all"]
DecisionSource = Literal["human", "auto", "expired"]
MISFIT = object()  # an edit whose text cannot become a value of its field's type


class RecordEdit(BaseModel):
    id: str = Field(description="Id of the record to change")
    field: str = Field(description="Name of the field to change")
    value: str = Field(description="The new value (a list: JSON, or items between commas; blank clears it)")


class ReviewInput(BaseModel):
    """What a reviewer submits: the Prefect UI form, `augment review approve` and the sheet."""

    approve: bool = Field(True, description="Approve the records under review, except the rejected ids; "
                                            "untick to reject them all")
    reject_ids: list[str] = Field(default_factory=list, description="Ids of records to reject")
    edits: list[RecordEdit] = Field(
        default_factory=list, description="Corrections to apply before export: record id, field, new value")
    reviewer: str = Field(min_length=1, description="Your name, kept with the decision")
    comment: str = Field("", description="Why, for the audit trail")


class ReviewDecision(ReviewInput):
    """The decision the export applies: the reviewer's input plus what the policy decided alone."""

    source: DecisionSource = "human"
    auto_approved_ids: list[str] = Field(default_factory=list)  # approved by score, never shown to the human
    approve_above: float | None = None
    # A human's decisions from earlier runs on records that read as they did then: never shown again.
    earlier: list[EarlierDecision] = Field(default_factory=list)
    decided_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


class ReviewRequest(BaseModel):
    """What a paused run waits for (pending.json): lets `augment review` work from another shell."""

    flow_run_id: str
    api_url: str | None = None
    to_review: list[str]  # ids a human decides
    auto_approved: list[str] = Field(default_factory=list)
    earlier: list[str] = Field(default_factory=list)  # ids that keep a decision from an earlier run
    flagged: int = 0
    failed: int = 0
    approve_above: float | None = None
    output_fields: list[str] = Field(default_factory=list)
    output_types: dict[str, OutputKind] = Field(default_factory=dict)  # as the template declares them
    sheet: str | None = None  # the full review sheet (CSV) written beside the run's stage data
    timeout_seconds: int | None = None
    timeout_outcome: TimeoutOutcome = "reject-all"
    requested_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def output_specs(self) -> dict[str, OutputSpec]:
        return output_specs(self.output_types)


def read_processed(out: str) -> pd.DataFrame:
    """Every processed record under OUT (what the review stage decides on)."""
    report = read_json(RunLayout(out).process_report)
    frames = [read_frame(part) for part in report["parts"]]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def read_request(out: str) -> ReviewRequest:
    """What the paused run under OUT asked for (its pending.json)."""
    return ReviewRequest.model_validate(read_json(RunLayout(out).pending_review))


def review_sheet_path(out: str) -> str:
    """The full review sheet a paused run writes beside its pending.json."""
    return RunLayout(out).pending_review.rsplit("/", 1)[0] + "/sheet.csv"


def reviewable(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame[AI_STATUS] != "failed"] if not frame.empty else frame


def undecided(frame: pd.DataFrame, earlier: Collection[str]) -> pd.DataFrame:
    """FRAME without the records that keep an earlier decision (ids EARLIER)."""
    if not earlier or frame.empty:
        return frame
    return frame[~frame[ID].astype(str).isin(set(earlier))]


def split_by_score(frame: pd.DataFrame, approve_above: float | None) -> tuple[list[str], list[str]]:
    """(ids approved by score alone, ids left for a human); with no threshold a human sees all."""
    candidates = reviewable(frame)
    if candidates.empty:
        return [], []
    if approve_above is None:
        return [], [str(i) for i in candidates[ID]]
    above = candidates[SCORE].fillna(-math.inf) > approve_above
    return [str(i) for i in candidates.loc[above, ID]], [str(i) for i in candidates.loc[~above, ID]]


def auto_decision(frame: pd.DataFrame, approve_above: float | None) -> ReviewDecision:
    """Approve everything, or only records whose quality score is above the threshold."""
    approved, _ = split_by_score(frame, approve_above)
    if approve_above is None:
        return ReviewDecision(approve=True, reviewer=AUTO_REVIEWER, comment="auto-approved", source="auto")
    return ReviewDecision(approve=False, reviewer=AUTO_REVIEWER, source="auto", auto_approved_ids=approved,
                          approve_above=approve_above, comment=f"auto: approved {SCORE} > {approve_above}")


def human_decision(given: ReviewInput, request: ReviewRequest) -> ReviewDecision:
    return ReviewDecision(**given.model_dump(), source="human", auto_approved_ids=request.auto_approved,
                          approve_above=request.approve_above)


def expired_decision(request: ReviewRequest) -> ReviewDecision:
    """What happens when nobody decided in time: the chosen outcome for the records awaiting review."""
    return ReviewDecision(
        approve=request.timeout_outcome == "approve-all", reviewer=EXPIRED_REVIEWER, source="expired",
        comment=f"no review within {request.timeout_seconds} s; timeout outcome: {request.timeout_outcome}",
        auto_approved_ids=request.auto_approved, approve_above=request.approve_above,
    )


def editable_fields(frame: pd.DataFrame) -> list[str]:
    """Fields an edit may change: the record's own and AI fields, never system or review columns."""
    return sorted(c for c in frame.columns if not is_system(c) and c not in REVIEW_COLUMNS)


def decision_problems(given: ReviewInput, frame: pd.DataFrame, earlier: Collection[str] = (),
                      specs: Mapping[str, OutputSpec] | None = None) -> list[str]:
    """What in a submission does not fit the records under review, one sentence each.

    FRAME holds the records under review; EARLIER names records that keep a decision from an
    earlier run, which this one may not change; SPECS, the output fields' declared types (an edit
    of a field of labels names labels, or is blank).
    """
    candidates = reviewable(frame)
    ids = {str(i) for i in candidates[ID]} if not candidates.empty else set()

    def unknown(record_id: str, where: str) -> str:
        if record_id in earlier:
            return (f"record '{record_id}' in {where} keeps the decision a reviewer made in an earlier run "
                    "(rerun with --review-again to decide it anew)")
        if named := record_named_by(candidates, record_id):
            field, found = named
            return (f"unknown id '{record_id}' in {where}: the record whose field '{field}' is '{record_id}' "
                    f"has the id '{found}' (records are named by the ids `augment review show` lists; "
                    "--id-column makes a field of yours the ids)")
        return f"unknown id '{record_id}' in {where}"

    problems = [unknown(i, "reject_ids") for i in given.reject_ids if i not in ids]
    editable = editable_fields(frame)
    for edit in given.edits:
        if edit.id not in ids:
            problems.append(unknown(edit.id, "edits"))
        if edit.field not in editable:
            problems.append(f"record field '{edit.field}' does not exist (edits may change: "
                            f"{', '.join(editable)})")
        elif coerce(edit.value, frame[edit.field], spec := (specs or {}).get(edit.field)) is MISFIT:
            if spec is not None and spec.labels:
                what, pick = ("a list of labels", "any") if spec.many else ("a label", "one")
                problems.append(f"'{edit.value}' is not {what} of field '{edit.field}' (record '{edit.id}'): "
                                f"use {pick} of {', '.join(spec.labels)}, or leave it blank")
            else:
                problems.append(f"'{edit.value}' is not a valid {_type_name(frame[edit.field])} for field "
                                f"'{edit.field}' of record '{edit.id}'")
    return problems


def record_named_by(frame: pd.DataFrame, value: str) -> tuple[str, str] | None:
    """The field and id of the one record that has VALUE in a field of its own (a reviewer naming a
    record by the id they know), or None when no record or several do."""
    found: dict[str, str] = {}
    for field in editable_fields(frame):
        for record_id in frame.loc[frame[field].map(as_text) == value, ID]:
            found.setdefault(str(record_id), field)
    if len(found) != 1:
        return None
    [(record_id, field)] = found.items()
    return field, record_id


def _type_name(column: pd.Series) -> str:
    container = _container_kind(column)
    return {list: 'JSON list ([1, 2])', dict: 'JSON object ({"a": 1})'}.get(container, str(column.dtype))


def _container_kind(column: pd.Series) -> type | None:
    """list or dict when every value the column holds is one (a list output, a nested field)."""
    if column.dtype != object:
        return None
    kinds = {list if isinstance(v, list | tuple | np.ndarray) else type(v)
             for v in column if not is_missing(v)}
    return kinds.pop() if len(kinds) == 1 and kinds <= {list, dict} else None


def _holds_only_text(column: pd.Series) -> bool:
    """Whether every item of every list in COLUMN is text (tags, names), as a typed `a, b` would be."""
    items = [item for value in column if not is_missing(value) for item in value]
    return bool(items) and all(isinstance(item, str) for item in items)


def coerce(value: str, column: pd.Series, spec: OutputSpec | None = None) -> Any:
    """The edit's text as the column's type (int, float, bool) or as text; blank clears the field.

    Returns MISFIT when the text cannot be a value of a numeric or boolean column, or is not the
    JSON list or object a column of lists or objects holds (the sheet shows them as JSON). A
    column of lists of text also takes the items as a spreadsheet user types them: `a, b`. SPEC,
    the type a template declares for an output field, tells a list where the column holds none
    yet, and the labels a value must name (in any case: 'Food' is 'food').
    """
    typed = _typed(value, column, spec)
    if spec is None or not spec.labels or typed is None or typed is MISFIT:
        return typed
    values = [matching_label(spec.labels, item) for item in (typed if isinstance(typed, list) else [typed])]
    if any(item not in spec.labels for item in values):
        return MISFIT
    return list(dict.fromkeys(values)) if isinstance(typed, list) else values[0]


def _typed(value: str, column: pd.Series, spec: OutputSpec | None) -> Any:
    text = value.strip()
    if not text:
        return None
    if container := _container_kind(column) or (list if spec is not None and spec.many else None):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = MISFIT
        text_items = _holds_only_text(column) or (spec is not None and spec.base == "string")
        if container is list and not isinstance(parsed, list) and text_items:
            return [item.strip() for item in text.split(",") if item.strip()]
        return parsed if isinstance(parsed, container) else MISFIT
    if pd.api.types.is_bool_dtype(column.dtype):
        truth = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}
        return truth.get(text.lower(), MISFIT)
    if pd.api.types.is_numeric_dtype(column.dtype):
        try:
            number = float(text)
        except ValueError:
            return MISFIT
        if pd.api.types.is_integer_dtype(column.dtype):
            return int(number) if number.is_integer() else MISFIT
        return number
    return value


class Verdict(NamedTuple):
    """How one record was decided: the review columns and the audit row's source."""

    status: str
    reviewer: str
    at: str
    comment: str
    source: str


def verdicts(record_ids: Iterable[str], decision: ReviewDecision) -> list[Verdict]:
    """Each record's verdict: an earlier run's human decision if it kept one; else a rejection by
    id, the score policy's approval, or the decision on the batch."""
    earlier = {kept.id: kept for kept in decision.earlier}
    rejected, auto = set(decision.reject_ids), set(decision.auto_approved_ids)

    def one(record_id: str) -> Verdict:
        if kept := earlier.get(record_id):
            return Verdict(kept.status, kept.reviewer, kept.decided_at, kept.comment, EARLIER)
        if record_id in auto and record_id not in rejected:
            return Verdict("approved", AUTO_REVIEWER, decision.decided_at,
                           f"auto: {SCORE} > {decision.approve_above}", "auto")
        approved = decision.approve and record_id not in rejected
        return Verdict("approved" if approved else "rejected", decision.reviewer, decision.decided_at,
                       decision.comment, decision.source)

    return [one(record_id) for record_id in record_ids]


Audit = list[dict[str, Any]]


def apply_decision(frame: pd.DataFrame, decision: ReviewDecision,
                   specs: Mapping[str, OutputSpec] | None = None) -> tuple[pd.DataFrame, Audit]:
    """The reviewed records (with review columns) and an audit row per decision and per edit;
    SPECS: the output fields' declared types, as for `coerce`."""
    when = decision.decided_at
    out = reviewable(frame).copy()
    if out.empty:  # every record was quarantined or failed: nothing to decide on
        return out, []
    decided = verdicts(out[ID].astype(str), decision)
    out[REVIEW_STATUS] = [v.status for v in decided]
    out[REVIEWED_BY] = [v.reviewer for v in decided]
    out[REVIEWED_AT] = [v.at for v in decided]
    out[REVIEW_COMMENT] = [v.comment for v in decided]
    audit: Audit = []
    position = {str(record_id): index for index, record_id in zip(out.index, out[ID], strict=True)}
    edits = [(RecordEdit(id=kept.id, field=field, value=value), kept.reviewer, EARLIER, kept.decided_at)
             for kept in decision.earlier for field, value in kept.edits.items()]
    edits += [(edit, decision.reviewer, decision.source, when) for edit in decision.edits]
    for edit, reviewer, source, edited_at in edits:
        index = position[edit.id]
        if edit.field not in out.columns:  # an earlier edit filled a field this run's template lacks
            out[edit.field] = pd.Series(None, index=out.index, dtype=object)
        before = out.at[index, edit.field]
        after = coerce(edit.value, out[edit.field], (specs or {}).get(edit.field))
        if after is MISFIT:  # decision_problems refuses these; kept as text if one gets here
            after = edit.value
        numeric = pd.api.types.is_numeric_dtype(out[edit.field].dtype)
        if numeric and (after is None or isinstance(after, str)):
            out[edit.field] = out[edit.field].astype(object)
        out.at[index, edit.field] = after
        audit.append({"id": edit.id, "action": "edit", "field": edit.field,
                      "before": plain(before), "after": after,
                      "reviewer": reviewer, "source": source, "at": edited_at})
    for record_id, v in zip(out[ID], decided, strict=True):
        audit.append({"id": record_id, "action": v.status, "reviewer": v.reviewer, "comment": v.comment,
                      "source": v.source, "at": v.at})
    return out, audit


def decisions_to_keep(decision: ReviewDecision, frame: pd.DataFrame, shown_ids: list[str],
                      output_fields: list[str] | None = None) -> list[EarlierDecision]:
    """A human's decision on each record it was shown (SHOWN_IDS) or rejected or edited, as the
    ledger keeps it for reruns. A record approved by score that the human edited counts as approved.
    A rejected record keeps its answer (OUTPUT_FIELDS), for a run that asks again to show the model."""
    if decision.source != "human":
        return []
    rejected, shown = set(decision.reject_ids), set(shown_ids)
    edits: dict[str, dict[str, str]] = defaultdict(dict)
    for edit in decision.edits:
        edits[edit.id][edit.field] = edit.value  # in order, so a field's last edit stands
    decided = shown | rejected | set(edits)
    decided_rows = frame[frame[ID].astype(str).isin(decided)]
    seen = fingerprints(decided_rows)
    # Only a model's answer: a record without one (no key) has nothing to show the model again.
    answers = {str(row[ID]): {f: plain(row[f]) for f in output_fields or [] if f in row}
               for row in decided_rows.to_dict(orient="records") if row.get(AI_STATUS) == "ok"}
    kept = []
    for record_id in seen:
        status = "rejected" if record_id in rejected or (record_id in shown and not decision.approve) \
            else "approved"
        kept.append(EarlierDecision(
            id=record_id, fingerprint=seen[record_id], reviewer=decision.reviewer, comment=decision.comment,
            status=status, decided_at=decision.decided_at, edits=edits.get(record_id, {}),
            answer=answers.get(record_id, {}) if status == "rejected" else {}))
    return kept


def review_report(decision: ReviewDecision) -> dict[str, Any]:
    """The review section of summary.json: how the records were decided, by whom, and when."""
    status = {"human": "reviewed", "auto": "auto", "expired": "review expired"}[decision.source]
    return {
        "status": status, "reviewer": decision.reviewer, "decided_at": decision.decided_at,
        "comment": decision.comment, "approve_above": decision.approve_above,
        "auto_approved": len(decision.auto_approved_ids), "rejected_ids": len(decision.reject_ids),
        "edits": len(decision.edits), "earlier_decisions": len(decision.earlier),
    }
