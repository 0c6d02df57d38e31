"""Airtable sink: write augmented fields back onto the records they came from.

URI: `airtable://BASE_ID/TABLE?fields=a,b&key=FIELD&block=NAME`. Records read from this same table
carry their Airtable record id (STORE_KEY, set by the Airtable source) and are updated by it; others
(including records read from another table or base) are upserted on `key` (Airtable's performUpsert)
or created when no key is given. Requests carry at most 10 records (Airtable answers 422 to more)
and `typecast`, so select options and numbers written as text are converted by Airtable instead of
refused. A missing value is left out of its record's fields, so it never clears a cell (records of
one request may then name different fields, as Airtable allows). A list goes to a multi-select or
linked-record field as an array, to any other field as its JSON text; the enrichers go only to
fields the table has. Both come from the base's schema, read when a list or an enricher is to be
written; with a token without `schema.bases:read`, lists go as JSON text and an enricher field
Airtable refuses as unknown is left out from then on. A refused value fails its record only; an
unknown field or a table the token cannot write stops the write with one error. A request without an
answer after the retries, or still rate limited (429) or failing (5xx) after them, stops the write
too (see SinkCounts.stop_unanswered): every later one would wait them out again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from augment_it.connections import STORE_KEY, read_from
from augment_it.errors import UserInputError
from augment_it.records import is_missing
from augment_it.sinks import (
    FieldChoice,
    SinkCounts,
    field_value,
    in_batches,
    present_values,
    register_sink_scheme,
    send_in_turn,
)
from augment_it.sources import SOURCE
from augment_it.sources.airtable import AirtableTarget, describe_http_error, error_of, field_types, retried

if TYPE_CHECKING:
    from pyairtable import Table

RECORDS_PER_REQUEST = 10
FATAL_STATUSES = {401, 403, 404}  # wrong token, no access, no such base/table: nothing will succeed
# Errors about the table or a field rather than one record's value: every record would fail the same
# way, so the write stops instead of retrying each record on its own (10 requests per batch).
FATAL_ERROR_TYPES = {"UNKNOWN_FIELD_NAME", "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", "INVALID_PERMISSIONS",
                     "NOT_FOUND", "AUTHENTICATION_REQUIRED"}
TABLE_ID = re.compile(r"tbl[A-Za-z0-9]{14}")
UNKNOWN_FIELD = re.compile(r'Unknown field name: "(.+)"')
LIST_FIELD_TYPES = {"multipleSelects", "multipleRecordLinks"}  # the types that take an array of text


class AirtableUnreachable(UserInputError):
    """No answer from Airtable (refused, dropped or timed out) after the retries allowed."""


def error_type(exc: Exception) -> str | None:
    """Airtable's `error.type` (`{"error": {"type": ..., "message": ...}}`, or `{"error": "NOT_FOUND"}`)."""
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        error = error_of(response)
    except ValueError:
        return None
    if isinstance(error, dict):
        error = error.get("type")
    return error if isinstance(error, str) else None


def unknown_field(exc: Exception) -> str | None:
    """The field an UNKNOWN_FIELD_NAME refusal names (`Unknown field name: "word_count"`)."""
    response = getattr(exc, "response", None)
    if response is None or error_type(exc) != "UNKNOWN_FIELD_NAME":
        return None
    try:
        error = error_of(response)
    except ValueError:
        return None
    match = UNKNOWN_FIELD.search(str(error.get("message", ""))) if isinstance(error, dict) else None
    return match.group(1) if match else None


@dataclass
class AirtableSink:
    target: AirtableTarget
    choice: FieldChoice
    key: str | None
    # Optional fields Airtable refused as unknown (its schema unread): left out of the later requests.
    absent: set[str] = field(default_factory=set)

    def check(self) -> None:
        table = self.target.table_client()
        self.choice.check(self.target.name, field_types(table, self.target.table))

    def write(self, records: pd.DataFrame) -> dict[str, Any]:
        counts = SinkCounts("airtable", f"{self.target.base}/{self.target.table}")
        if records.empty:
            return counts.as_dict()
        table = self.target.table_client()
        rows = records.to_dict(orient="records")
        # The schema says which fields the table has and which take an array: read when it matters.
        wanted = [f for f in self.choice.fields if f in records.columns]
        needs_schema = bool(self.choice.optional) or any(
            isinstance(row[f], list | tuple | np.ndarray) for row in rows for f in wanted)
        schema = field_types(table, self.target.table) if needs_schema else None
        fields = self.choice.to_write(records, schema)
        list_fields = {name for name, kind in (schema or {}).items() if kind in LIST_FIELD_TYPES}
        by_id, by_key, keyless = [], [], 0
        for row in rows:
            values = present_values({f: field_value(row[f], f in list_fields) for f in fields})
            record_id = self._record_id(row)
            if record_id:
                by_id.append({"id": record_id, "fields": values})
            elif self.key and is_missing(row.get(self.key)):
                keyless += 1  # counted once here, never sent: an upsert needs the key value
            else:
                if self.key:
                    values[self.key] = field_value(row.get(self.key))
                by_key.append({"fields": values})
        if keyless:
            counts.fail(keyless, f"{keyless} record(s) have no value in key field {self.key!r}")
        sends = [(len(batch), partial(self._send, table, batch, counts))
                 for group in (by_id, by_key) for batch in in_batches(group, RECORDS_PER_REQUEST)]
        send_in_turn(sends, counts, AirtableUnreachable, "record(s)")
        return counts.as_dict()

    def _record_id(self, row: dict[str, Any]) -> str | None:
        """The Airtable record id to update, only for a record read from this base and table."""
        record_id = row.get(STORE_KEY)
        if not isinstance(record_id, str) or not record_id:
            return None
        if read_from(row, self.target.name):
            return record_id
        # Read through the table's name and written through its id (or the reverse): the same
        # table, maybe. Record ids are unique across Airtable, so if it is another table of this
        # base Airtable refuses the id as not in the table: no unrelated record is written.
        source = row.get(SOURCE)
        if not isinstance(source, str) or not source.startswith("airtable:"):
            return None
        base, _, table = source.rpartition("#")[0].removeprefix("airtable:").partition("/")
        one_is_an_id = bool(TABLE_ID.fullmatch(table)) != bool(TABLE_ID.fullmatch(self.target.table))
        return record_id if base == self.target.base and one_is_an_id else None

    def _send(self, table: Table, batch: list[dict[str, Any]], counts: SinkCounts,
              split: bool = True) -> None:
        import requests

        for record in batch:
            for name in self.absent:
                record["fields"].pop(name, None)
        try:
            self._request(table, batch, counts)
        except requests.RequestException as exc:
            response = getattr(exc, "response", None)
            if response is None:
                # A create is never repeated (IDEMPOTENT_METHODS): it may have been applied unanswered.
                maybe = " (the records may have been created: not sent again)" if self._creates(batch) else ""
                raise AirtableUnreachable(f"cannot reach Airtable at {self.target.settings.endpoint_url}: "
                                          f"{type(exc).__name__}{maybe}") from None
            status = response.status_code
            reason = describe_http_error(exc)
            if (name := unknown_field(exc)) in self.choice.optional and name not in self.absent:
                self.absent.add(name)  # the request was refused whole: nothing of it was written
                self._send(table, batch, counts, split)
                return
            if status in FATAL_STATUSES or error_type(exc) in FATAL_ERROR_TYPES:
                after = f" (after {counts.written} record(s) were written)" if counts.written else ""
                raise UserInputError(f"airtable:{counts.target}: cannot write: {reason}{after}") from None
            if retried(status, "POST" if self._creates(batch) else "PATCH"):
                # Still refused after the retries: Airtable takes no writes now, and every later
                # request would wait the retries out again (up to 30 s each).
                settings = self.target.settings
                raise AirtableUnreachable(f"Airtable at {settings.endpoint_url} still answered {reason} "
                                          f"after {settings.max_retries} retries") from None
            if status == 422 and split and len(batch) > 1:
                # One bad value refuses the whole request: send the records one by one so only
                # the bad record is counted as failed.
                for record in batch:
                    self._send(table, [record], counts, split=False)
                return
            which = ", ".join(r.get("id") or "new record" for r in batch)
            counts.fail(len(batch), f"{which}: {reason}")

    def _creates(self, batch: list[dict[str, Any]]) -> bool:
        """Whether the batch goes as a POST: records without an id, and no key to upsert on."""
        return not self.key and not all("id" in r for r in batch)

    def _request(self, table: Table, batch: list[dict[str, Any]], counts: SinkCounts) -> None:
        if self._creates(batch):
            counts.created += len(table.batch_create([r["fields"] for r in batch], typecast=True))
        elif all("id" in r for r in batch):
            counts.updated += len(table.batch_update(batch, typecast=True))
        else:
            result = table.batch_upsert(batch, key_fields=[self.key], typecast=True)
            counts.updated += len(result["updatedRecords"])
            counts.created += len(result["createdRecords"])


def open_airtable_sink(uri: str, default_fields: Sequence[str],
                       optional_fields: Sequence[str]) -> AirtableSink:
    target = AirtableTarget.parse(uri)
    choice = FieldChoice.of(target.uri.many("fields"), default_fields, optional_fields)
    return AirtableSink(target, choice, target.uri.one("key"))


register_sink_scheme("airtable", open_airtable_sink)
