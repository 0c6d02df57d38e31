"""NocoDB sink: write augmented fields back onto the rows they came from (v2 bulk PATCH).

URI: `nocodb://TABLE_ID` or `nocodb://BASE_ID/TABLE`, with `?fields=a,b`, `key=Id` and `block=NAME`.
Rows with a primary key (STORE_KEY from the NocoDB source, or the `key` column) are updated with
`PATCH /api/v2/tables/{tableId}/records`; rows without one are created with `POST`. A batch the
server refuses is retried row by row so only the bad rows count as failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from augment_it.connections import STORE_KEY, plain
from augment_it.errors import UserInputError
from augment_it.records import is_missing
from augment_it.sinks import SinkCounts, register_sink_scheme, writable_fields
from augment_it.sources.nocodb import NocoDBClient, NocoDBTarget, error_text

FATAL_STATUSES = {401, 403}


def _key_value(value: Any) -> Any:
    value = plain(value)
    # A key column read back through Parquet may have become float (1.0) or text ("1").
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


@dataclass
class NocoDBSink:
    target: NocoDBTarget
    fields: list[str]

    def write(self, records: pd.DataFrame) -> dict[str, Any]:
        counts = SinkCounts("nocodb", self.target.table)
        fields = writable_fields(records, self.fields)
        if records.empty:
            return counts.as_dict()
        key = self.target.key
        updates, creates = [], []
        for row in records.to_dict(orient="records"):
            values = {f: plain(row[f]) for f in fields if f != key}
            pk = row.get(STORE_KEY)
            if is_missing(pk):
                pk = row.get(key)
            if is_missing(pk):
                creates.append(values)
            else:
                updates.append({key: _key_value(pk), **values})
        client = NocoDBClient(self.target.settings)
        try:
            table_id = client.table_id(self.target.base, self.target.table)
            self._check_table(client, table_id)
            size = self.target.settings.batch_size
            for start in range(0, len(updates), size):
                self._send(client, table_id, "PATCH", updates[start:start + size], counts)
            for start in range(0, len(creates), size):
                self._send(client, table_id, "POST", creates[start:start + size], counts)
        finally:
            client.close()
        return counts.as_dict()

    def _check_table(self, client: NocoDBClient, table_id: str) -> None:
        """One read first: a wrong token or table fails the write as a whole, not row by row."""
        response = client.request("GET", f"/api/v2/tables/{table_id}/records", params={"limit": 1})
        if response.status_code != 200:
            raise UserInputError(f"nocodb:{table_id}: cannot write: {error_text(response)}")

    def _send(self, client: NocoDBClient, table_id: str, method: str, batch: list[dict[str, Any]],
              counts: SinkCounts, split: bool = True) -> None:
        response = client.request(method, f"/api/v2/tables/{table_id}/records", json=batch)
        if response.status_code == 200:
            if method == "PATCH":
                counts.updated += len(batch)
            else:
                counts.created += len(batch)
            return
        if response.status_code in FATAL_STATUSES:
            raise UserInputError(f"nocodb:{table_id}: cannot write: {error_text(response)}")
        if split and len(batch) > 1 and response.status_code < 500:
            for row in batch:
                self._send(client, table_id, method, [row], counts, split=False)
            return
        which = ", ".join(str(r.get(self.target.key, "new row")) for r in batch)
        counts.fail(len(batch), f"{which}: {error_text(response)}")


def open_nocodb_sink(uri: str, default_fields: Sequence[str]) -> NocoDBSink:
    target = NocoDBTarget.parse(uri)
    return NocoDBSink(target, target.uri.many("fields") or list(default_fields))


register_sink_scheme("nocodb", open_nocodb_sink)
