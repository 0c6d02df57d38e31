"""NocoDB sink: write augmented fields back onto the rows they came from (v2 bulk PATCH).

URI: `nocodb://TABLE_ID` or `nocodb://BASE_ID/TABLE`, with `?fields=a,b`, `key=Id` and `block=NAME`.
Rows read from this same table (STORE_KEY from the NocoDB source), or carrying the `key` column,
are updated with `PATCH /api/v2/tables/{tableId}/records`; other rows are created with `POST`.
NocoDB drops fields that are not columns of the table and still answers 200, so the fields are
checked against the table's columns first (when the token may read them). A list goes to a
MultiSelect column as its options joined by commas, to any other column as its JSON text.

An update leaves a missing value out of its row, so it never clears a cell; an insert sends it as
null (an empty cell, whatever the column's default, as a Databricks INSERT does).

A batch refused as a whole is retried row by row so only the bad rows count as failed: an update
(PATCH) on any refusal, an insert (POST) only on a validation refusal (400/422), since NocoDB
validates every row and inserts the batch in one transaction, so none of it was written. A
batch that gets no answer after the retries, or is still rate limited (429) or failing (gateway
errors) after them, stops the write (see SinkCounts.stop_unanswered): every later one would wait
them out again. A batch without an answer is not sent again: its rows may have been written.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd

from augment_it.connections import STORE_KEY, store_key_for
from augment_it.errors import InputNotice, UserInputError
from augment_it.records import is_missing, plain
from augment_it.sinks import (
    FieldChoice,
    SinkCounts,
    field_value,
    in_batches,
    present_values,
    register_sink_scheme,
    send_in_turn,
)
from augment_it.sources.nocodb import (
    NocoDBClient,
    NocoDBTarget,
    NocoDBUnreachable,
    error_text,
    location,
    retried,
)

FATAL_STATUSES = {401, 403}
REJECTED_WHOLE = {400, 422}  # validation: NocoDB refused the request before writing any of it


def multi_select_value(value: Any) -> Any:
    """A list as a MultiSelect cell takes it in the v2 API, its options joined by commas
    ("robots,retail"); anything else as any field takes it."""
    value = plain(value, strict_json=True)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    return field_value(value)


def _key_value(value: Any) -> Any:
    value = plain(value, strict_json=True)
    # A key column read back through Parquet may have become float (1.0) or text ("1").
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


@dataclass
class NocoDBSink:
    target: NocoDBTarget
    choice: FieldChoice

    def check(self) -> None:
        client = NocoDBClient(self.target.settings)
        try:
            table_id = client.table_id(self.target.base, self.target.table)
            self._check_table(client, table_id)
            self.choice.check(f"nocodb:{self.target.table}", client.writable_columns(table_id))
        finally:
            client.close()

    def write(self, records: pd.DataFrame) -> dict[str, Any]:
        counts = SinkCounts("nocodb", self.target.table)
        if records.empty:
            return counts.as_dict()
        key = self.target.key
        client = NocoDBClient(self.target.settings)
        try:
            table_id = client.table_id(self.target.base, self.target.table)
            self._check_table(client, table_id)
            columns = client.writable_columns(table_id)
            fields = self.choice.to_write(records, columns)
            multi_select = {name for name, kind in (columns or {}).items() if kind == "MultiSelect"}
            updates, creates = [], []
            for row in records.to_dict(orient="records"):
                values = {f: multi_select_value(row[f]) if f in multi_select else field_value(row[f])
                          for f in fields if f != key}
                pk = self._primary_key(row, table_id)
                if pk is None:
                    creates.append(values)
                else:
                    updates.append({key: pk, **present_values(values)})
            sent = [f for f in fields if f != key] + ([key] if updates else [])
            self._check_columns(columns, table_id, sent)
            size = self.target.settings.batch_size
            sends = [(len(batch), partial(self._send, client, table_id, method, batch, counts))
                     for method, rows in (("PATCH", updates), ("POST", creates))
                     for batch in in_batches(rows, size)]
            send_in_turn(sends, counts, NocoDBUnreachable, "row(s)")
        finally:
            client.close()
        return counts.as_dict()

    def _primary_key(self, row: dict[str, Any], table_id: str) -> Any:
        """The row to update in this table, or None to create one."""
        own = store_key_for(row, location(table_id))
        if own is not None:
            return _key_value(own)
        pk = row.get(self.target.key)
        if is_missing(pk):
            return None
        foreign = row.get(STORE_KEY)
        # A record read from another table carries that table's key in the key column too (the
        # source copies the whole row): written here it would overwrite an unrelated row.
        if not is_missing(foreign) and _key_value(foreign) == _key_value(pk):
            return None
        return _key_value(pk)

    def _check_table(self, client: NocoDBClient, table_id: str) -> None:
        """One read first: a wrong token or table fails the write as a whole, not row by row."""
        response = client.request("GET", f"/api/v2/tables/{table_id}/records", params={"limit": 1})
        if response.status_code != 200:
            raise UserInputError(f"nocodb:{table_id}: cannot write: {error_text(response)}")

    def _check_columns(self, known: dict[str, str] | None, table_id: str, fields: list[str]) -> None:
        """Refuse fields the table has no column for: NocoDB would drop them and answer 200."""
        if known is None:
            warnings.warn(f"nocodb:{self.target.table}: the table's columns could not be read "
                          f"(GET /api/v2/meta/tables/{table_id}), so fields that are not columns cannot "
                          f"be caught: NocoDB leaves such fields out without an error",
                          InputNotice, stacklevel=3)
            return
        missing = [f for f in fields if f not in known]
        if missing:
            raise UserInputError(f"nocodb:{self.target.table}: the table has no writable column(s) "
                                 f"{', '.join(missing)} (NocoDB would drop them without an error); "
                                 f"add the columns or choose other fields with ?fields=")

    def _send(self, client: NocoDBClient, table_id: str, method: str, batch: list[dict[str, Any]],
              counts: SinkCounts, split: bool = True) -> None:
        try:
            response = client.request(method, f"/api/v2/tables/{table_id}/records", json=batch)
        except NocoDBUnreachable as exc:
            if method == "POST":  # never repeated by the client: it may have been applied unanswered
                raise NocoDBUnreachable(f"{exc} (the rows sent last may have been created: not sent "
                                        "again)") from None
            raise
        if response.is_success:
            if method == "PATCH":
                counts.updated += len(batch)
            else:
                counts.created += len(batch)
            return
        status = response.status_code
        if status in FATAL_STATUSES:
            raise UserInputError(f"nocodb:{table_id}: cannot write: {error_text(response)}")
        if retried(status, method):
            # Still refused after the retries: NocoDB takes no writes now, and every later batch
            # would wait the retries out again.
            raise NocoDBUnreachable(f"NocoDB at {client.settings.url} still answered {error_text(response)} "
                                    f"after {client.settings.max_retries} retries")
        # An update can be sent again safely; an insert only when it was refused before writing.
        splittable = status in REJECTED_WHOLE if method == "POST" else 400 <= status < 500
        if split and len(batch) > 1 and splittable:
            for row in batch:
                self._send(client, table_id, method, [row], counts, split=False)
            return
        counts.fail(len(batch), f"{self._which(batch)}: {error_text(response)}")

    def _which(self, batch: list[dict[str, Any]]) -> str:
        keys = [str(r[self.target.key]) for r in batch if self.target.key in r]
        return ", ".join(keys) if keys else f"{len(batch)} new row(s)"


def open_nocodb_sink(uri: str, default_fields: Sequence[str], optional_fields: Sequence[str]) -> NocoDBSink:
    target = NocoDBTarget.parse(uri)
    return NocoDBSink(target, FieldChoice.of(target.uri.many("fields"), default_fields, optional_fields))


register_sink_scheme("nocodb", open_nocodb_sink)
