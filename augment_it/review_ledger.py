"""Earlier review decisions, kept across runs into the same --out so a reviewer decides a record once.

A human's decision is kept per record id and fingerprint of what the reviewer saw: the record's
fields and the AI's answer, before any edit. A rerun applies it again, edits included, to a
record that reads the same. A new record, a changed one, or a new answer (another template or
model) is reviewed anew. Each version keeps its own decision: rejecting a run whose answers were
missing (no key) does not undo the decisions on the answers a later run gets back from the
cache. Decisions by score or by timeout are not kept: they are policy, applied afresh each run,
and nobody looked at the records.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel

from augment_it.enrichers import ENRICHED_FIELDS
from augment_it.layout import RunLayout, exists, read_json, write_json
from augment_it.records import ID, REVIEW_COLUMNS, is_missing, is_system, plain


class EarlierDecision(BaseModel):
    """One record's decision by a human in an earlier run (a line of the ledger)."""

    id: str
    fingerprint: str  # of the record as the reviewer saw it (`fingerprint`)
    status: Literal["approved", "rejected"]
    reviewer: str
    comment: str = ""
    decided_at: str
    edits: dict[str, str] = {}  # field → the text the reviewer gave, applied as a new edit would be
    # A rejected answer as the reviewer saw it (the template's output fields): a run that retries
    # rejected records shows it to the model (`rejections`).
    answer: dict[str, Any] = {}


def fingerprint(record: dict[str, Any]) -> str:
    """What a reviewer judged of RECORD: its own fields and the AI's answer, not augment-it's columns.

    Missing fields are left out and whole floats count as ints, so the same record reads alike
    when another source file adds a column or a gap turns its ints into floats. The enrichers'
    fields are left out too: they follow from the rest, and a newer augment-it may score differently.
    """
    seen = {}
    for field, value in record.items():
        if is_system(field) or field in REVIEW_COLUMNS or field in ENRICHED_FIELDS:
            continue
        if isinstance(value, list | tuple | dict) or not is_missing(value):
            value = plain(value)
            seen[str(field)] = int(value) if isinstance(value, float) and value.is_integer() else value
    canonical = json.dumps(seen, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]


def fingerprints(frame: pd.DataFrame) -> dict[str, str]:
    return {str(row[ID]): fingerprint(row) for row in frame.to_dict(orient="records")}


Ledger = dict[tuple[str, str], EarlierDecision]  # by (record id, fingerprint)


def read_ledger(out: str) -> Ledger:
    """The decisions kept under OUT; empty before the first human review."""
    path = RunLayout(out).review_ledger
    if not exists(path):
        return {}
    return keyed(EarlierDecision.model_validate(item) for item in read_json(path))


def keyed(decisions: Iterable[EarlierDecision]) -> Ledger:
    return {(d.id, d.fingerprint): d for d in decisions}


def write_ledger(out: str, ledger: Ledger) -> None:
    write_json([d.model_dump() for d in ledger.values()], RunLayout(out).review_ledger)


def still_valid(ledger: Ledger, frame: pd.DataFrame) -> list[EarlierDecision]:
    """The kept decisions on records in FRAME as they read now."""
    if not ledger or frame.empty:
        return []
    known = frame[frame[ID].astype(str).isin({record_id for record_id, _ in ledger})]
    return [ledger[key] for key in fingerprints(known).items() if key in ledger]


def rejections(ledger: Ledger, records: Iterable[dict[str, Any]]) -> dict[str, list[EarlierDecision]]:
    """For each of RECORDS a human rejected an answer to, the rejected answers, oldest first.

    A decision counts where the record, given the answer it kept, reads as the reviewer saw it:
    not once the record has changed since. Each rejection of a record is of the answer asked after
    the ones before it, so the list is the order in which they were asked."""
    rejected: dict[str, list[EarlierDecision]] = defaultdict(list)
    for decision in ledger.values():
        if decision.status == "rejected" and decision.answer:
            rejected[decision.id].append(decision)
    found = {}
    for record in records:
        record_id = str(record[ID])
        if chain := [d for d in rejected.get(record_id, [])
                     if fingerprint({**record, **d.answer}) == d.fingerprint]:
            found[record_id] = sorted(chain, key=lambda d: d.decided_at)
    return found
