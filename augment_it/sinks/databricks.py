"""Databricks sink: MERGE approved rows into a Delta table, or upload them as Parquet to a volume.

- `databricks://CATALOG.SCHEMA.TABLE?key=id&fields=a,b`: a `MERGE INTO ... USING (SELECT :k0 ...
  UNION ALL ...) ON target.key = source.key` per batch of rows, values passed as typed statement
  parameters (never spliced into the SQL): matched rows get the fields updated, new keys are
  inserted. Running it again updates the same rows and inserts nothing.
- `databricks:///Volumes/CATALOG/SCHEMA/VOLUME/path/file.parquet`: one Parquet file uploaded with
  the Files API (`w.files.upload`, overwrite), replaced on every run.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from augment_it.connections import STORE_KEY, StoreURI, load_settings, plain
from augment_it.errors import UserInputError
from augment_it.records import is_missing, to_storable
from augment_it.sinks import SinkCounts, register_sink_scheme, writable_fields
from augment_it.sources.databricks import (
    DatabricksAccessError,
    DatabricksSettings,
    StatementRunner,
    describe_sdk_error,
    quote_identifier,
    quote_table,
    workspace_client,
)


def sql_type(values: list[Any]) -> str:
    """One parameter type per column, so a NULL in one row and a number in the next agree."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOLEAN"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "BIGINT"
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "DOUBLE"
    return "STRING"


def as_parameter_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        import json

        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def merge_statement(table: str, key: str, fields: list[str], rows: int) -> str:
    columns = [key, *fields]
    selects = []
    for row in range(rows):
        names = [f":k{row}", *(f":v{row}_{i}" for i in range(len(fields)))]
        if row == 0:
            selects.append("SELECT " + ", ".join(f"{n} AS {quote_identifier(c)}" for n, c in zip(
                names, columns, strict=True)))
        else:
            selects.append("SELECT " + ", ".join(names))
    quoted = [quote_identifier(c) for c in columns]
    updates = ", ".join(f"{q} = source.{q}" for q in quoted[1:])
    sql = (f"MERGE INTO {quote_table(table)} AS target USING ({' UNION ALL '.join(selects)}) AS source "
           f"ON target.{quoted[0]} = source.{quoted[0]} ")
    if updates:
        sql += f"WHEN MATCHED THEN UPDATE SET {updates} "
    sources = ", ".join("source." + q for q in quoted)
    sql += f"WHEN NOT MATCHED THEN INSERT ({', '.join(quoted)}) VALUES ({sources})"
    return sql


@dataclass
class DatabricksTableSink:
    uri: StoreURI
    settings: DatabricksSettings
    fields: list[str]

    @property
    def key(self) -> str:
        return self.uri.one("key") or "id"

    def write(self, records: pd.DataFrame) -> dict[str, Any]:
        from databricks.sdk.service.sql import StatementParameterListItem

        table = self.uri.netloc
        counts = SinkCounts("databricks", table)
        fields = [f for f in writable_fields(records, self.fields) if f != self.key]
        if records.empty:
            return counts.as_dict()
        rows: list[tuple[Any, list[Any]]] = []
        for row in records.to_dict(orient="records"):
            key = row.get(STORE_KEY)
            if is_missing(key):
                key = row.get(self.key)
            if is_missing(key):
                counts.fail(1, f"{row.get('_id')}: no value in key column {self.key!r}")
                continue
            rows.append((plain(key), [plain(row[f]) for f in fields]))
        if not rows:
            return counts.as_dict()
        key_type = sql_type([k for k, _ in rows])
        field_types = [sql_type([values[i] for _, values in rows]) for i in range(len(fields))]
        runner = StatementRunner(self.settings, self.uri.one("warehouse"))
        size = max(1, self.settings.rows_per_statement)
        for start in range(0, len(rows), size):
            batch = rows[start:start + size]
            parameters = []
            for index, (key, values) in enumerate(batch):
                parameters.append(StatementParameterListItem(name=f"k{index}", type=key_type,
                                                             value=as_parameter_text(key)))
                parameters += [StatementParameterListItem(name=f"v{index}_{i}", type=field_types[i],
                                                          value=as_parameter_text(v))
                               for i, v in enumerate(values)]
            statement = merge_statement(table, self.key, fields, len(batch))
            try:
                columns, result = runner.run(statement, parameters)
            except DatabricksAccessError:
                raise
            except UserInputError as exc:
                counts.fail(len(batch), f"rows {start + 1}-{start + len(batch)}: {exc}")
                continue
            self._count(counts, columns, result, len(batch))
        return counts.as_dict()

    @staticmethod
    def _count(counts: SinkCounts, columns: list[Any], result: list[list[Any]], batch: int) -> None:
        """Databricks answers a MERGE with num_updated_rows / num_inserted_rows; trust those."""
        names = [c.name for c in columns]
        if result and "num_updated_rows" in names and "num_inserted_rows" in names:
            first = result[0]
            counts.updated += int(first[names.index("num_updated_rows")] or 0)
            counts.created += int(first[names.index("num_inserted_rows")] or 0)
        else:
            counts.updated += batch


@dataclass
class DatabricksVolumeSink:
    uri: StoreURI
    settings: DatabricksSettings
    fields: list[str]

    def write(self, records: pd.DataFrame) -> dict[str, Any]:
        from databricks.sdk.errors import DatabricksError

        path = self.uri.path
        counts = SinkCounts("databricks", path)
        columns = self.uri.many("fields")
        frame = records[writable_fields(records, columns)] if columns else records
        buffer = io.BytesIO()
        to_storable(frame).to_parquet(buffer, index=False)
        buffer.seek(0)
        try:
            workspace_client(self.settings).files.upload(path, buffer, overwrite=True)
        except DatabricksError as exc:
            raise UserInputError(f"databricks:{path}: cannot upload: {describe_sdk_error(exc)}") from None
        counts.created = len(frame)
        return counts.as_dict()


def open_databricks_sink(uri: str,
                         default_fields: Sequence[str]) -> DatabricksTableSink | DatabricksVolumeSink:
    parsed = StoreURI.parse(uri)
    settings = load_settings(DatabricksSettings, parsed.one("block"))
    if parsed.path.startswith("/Volumes/"):
        if not parsed.path.endswith(".parquet"):
            raise UserInputError(f"{uri}: a volume destination is a Parquet file path ending in .parquet")
        return DatabricksVolumeSink(parsed, settings, [])
    if not parsed.netloc:
        raise UserInputError(f"{uri}: expected databricks://CATALOG.SCHEMA.TABLE or "
                             "databricks:///Volumes/CATALOG/SCHEMA/VOLUME/file.parquet")
    quote_table(parsed.netloc)  # a malformed name fails now, before any row is sent
    return DatabricksTableSink(parsed, settings, parsed.many("fields") or list(default_fields))


register_sink_scheme("databricks", open_databricks_sink)
