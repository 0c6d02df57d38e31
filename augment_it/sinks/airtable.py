"""Airtable sink: write augmented fields back onto the records they came from.

URI: `airtable://BASE_ID/TABLE?fields=a,b&key=FIELD&block=NAME`. Records that carry an Airtable
record id (STORE_KEY, set by the Airtable source) are updated by that id; others are upserted on
`key` (Airtable's performUpsert) or created when no key is given. Requests carry at most 10
records (Airtable answers 422 to more) and `typecast`, so select options and numbers written as
text are converted by Airtable instead of refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from augment_it.connections import STORE_KEY, plain
from augment_it.errors import UserInputError
from augment_it.records import is_missing
from augment_it.sinks import SinkCounts, register_sink_scheme, writable_fields
from augment_it.sources.airtable import AirtableTarget, describe_http_error

if TYPE_CHECKING:
    from pyairtable import Table

RECORDS_PER_REQUEST = 10
FATAL_STATUSES = {401, 403, 404}  # wrong token, no access, no such base/table: nothing will succeed


@dataclass
class AirtableSink:
    target: AirtableTarget
    fields: list[str]
    key: str | None

    def write(self, records: pd.DataFrame) -> dict[str, Any]:
        counts = SinkCounts("airtable", f"{self.target.base}/{self.target.table}")
        fields = writable_fields(records, self.fields)
        if records.empty:
            return counts.as_dict()
        table = self.target.table_client()
        by_id, by_key = [], []
        for row in records.to_dict(orient="records"):
            values = {f: plain(row[f]) for f in fields}
            record_id = row.get(STORE_KEY)
            if isinstance(record_id, str) and record_id:
                by_id.append({"id": record_id, "fields": values})
            else:
                if self.key:
                    values[self.key] = plain(row.get(self.key))
                by_key.append({"fields": values})
        for start in range(0, len(by_id), RECORDS_PER_REQUEST):
            self._send(table, by_id[start:start + RECORDS_PER_REQUEST], counts)
        for start in range(0, len(by_key), RECORDS_PER_REQUEST):
            self._send(table, by_key[start:start + RECORDS_PER_REQUEST], counts)
        return counts.as_dict()

    def _send(self, table: Table, batch: list[dict[str, Any]], counts: SinkCounts,
              split: bool = True) -> None:
        import requests

        try:
            self._request(table, batch, counts)
        except requests.RequestException as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            reason = describe_http_error(exc)
            if status in FATAL_STATUSES:
                raise UserInputError(f"airtable:{counts.target}: cannot write: {reason}") from None
            if status == 422 and split and len(batch) > 1:
                # One bad value refuses the whole request: send the records one by one so only
                # the bad record is counted as failed.
                for record in batch:
                    self._send(table, [record], counts, split=False)
                return
            which = ", ".join(r.get("id") or "new record" for r in batch)
            counts.fail(len(batch), f"{which}: {reason}")

    def _request(self, table: Table, batch: list[dict[str, Any]], counts: SinkCounts) -> None:
        if all("id" in r for r in batch):
            counts.updated += len(table.batch_update(batch, typecast=True))
        elif self.key:
            missing = [r for r in batch if is_missing(r["fields"].get(self.key))]
            if missing:
                counts.fail(len(missing), f"{len(missing)} record(s) have no value in key field {self.key!r}")
                batch = [r for r in batch if r not in missing]
            if batch:
                result = table.batch_upsert(batch, key_fields=[self.key], typecast=True)
                counts.updated += len(result["updatedRecords"])
                counts.created += len(result["createdRecords"])
        else:
            counts.created += len(table.batch_create([r["fields"] for r in batch], typecast=True))


def open_airtable_sink(uri: str, default_fields: Sequence[str]) -> AirtableSink:
    target = AirtableTarget.parse(uri)
    return AirtableSink(target, target.uri.many("fields") or list(default_fields), target.uri.one("key"))


register_sink_scheme("airtable", open_airtable_sink)
