"""Databricks sink: MERGE approved rows into a Delta table, or upload them as Parquet to a volume.

- `databricks://CATALOG.SCHEMA.TABLE?key=id&fields=a,b`: a `MERGE INTO ... USING (SELECT :k0 ...
  UNION ALL ...) ON target.key = source.key` per batch of rows, values passed as typed statement
  parameters (never spliced into the SQL): matched rows get the fields updated, new keys are
  inserted. A matched row sets only the fields it has a value for: a missing (NULL) value never
  overwrites the target's. Running it again updates the same rows and inserts nothing. A batch
  holds at most `rows_per_statement` rows and stays within Databricks' limits for native
  parameters: 255 markers (so fewer rows when there are many fields) and 1 MB of values per
  statement.
- A list (or mapping) goes as its JSON text, parsed with `from_json` into the column's type when the
  column is an ARRAY, MAP or STRUCT (Databricks assigns no STRING to those), as the probe for the
  table's columns (`SELECT * ... LIMIT 0`) tells.
- One key, one row: Delta refuses a MERGE where two source rows match one target row, and inserts
  both when none does. So when several records of one write have the same key, the last one is
  written and each earlier one is counted as failed, with the key in the reason.
- A statement Databricks refuses counts its rows as failed. A host that cannot be reached (or
  answers 429/503 for the whole retry time) raises if nothing was written yet; after that, the
  rows not yet written are counted as failed and the write stops, keeping the counts so far.
- `databricks:///Volumes/CATALOG/SCHEMA/VOLUME/path/file.parquet`: one Parquet file uploaded with
  the Files API (`w.files.upload`, overwrite), replaced on every run.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from augment_it.connections import StoreURI, load_settings, store_key_for
from augment_it.errors import UserInputError
from augment_it.records import INT64_MAX, INT64_MIN, is_missing, plain, to_storable
from augment_it.sinks import FieldChoice, SinkCounts, register_sink_scheme, writable_fields
from augment_it.sources.databricks import (
    NESTED_TYPES,
    DatabricksAccessError,
    DatabricksSettings,
    DatabricksUnreachableError,
    StatementRunner,
    column_type,
    describe_sdk_error,
    quote_identifier,
    quote_table,
    unreachable,
    workspace_client,
)

if TYPE_CHECKING:
    from databricks.sdk.service.sql import ColumnInfo

MAX_PARAMETERS = 255  # parameter markers in one statement (Databricks native parameters)
MAX_PARAMETER_BYTES = 900_000  # all values of one statement: Databricks takes at most 1 MB


class TableColumns(dict[str, str | None]):
    """A table's columns by name, held lower-case since Databricks compares names without regard to
    case, each with its type when that is nested (ARRAY, MAP, STRUCT), else None."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def nested_type(self, name: str) -> str | None:
        return self.get(name.lower())


def sql_type(values: list[Any]) -> str:
    """One parameter type per column, so a NULL in one row and a number in the next agree."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "BOOLEAN"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        # A DECIMAL(38,0) key is read as an int and may not fit a BIGINT.
        return "BIGINT" if all(INT64_MIN <= v <= INT64_MAX for v in present) else "DECIMAL(38,0)"
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


def matched_clauses(fields: list[str], present: list[tuple[bool, ...]]) -> str:
    """`WHEN MATCHED` clauses that set, in each row, only the (quoted) fields it has a value for.

    A missing value must not clear the target's, e.g. one typed in while the run waited for review.
    Not `SET f = COALESCE(source.f, target.f)`: COALESCE takes the least common type of parameter
    and column (DOUBLE for a DECIMAL column, BIGINT for a STRING one), so a kept value could be
    changed or fail to convert. Instead one clause per pattern of present fields in the batch,
    each a plain assignment as before.
    """
    if not fields:
        return ""
    patterns = list(dict.fromkeys(present))
    clauses = []
    for pattern in patterns:
        # A row with nothing to write still needs a clause, for Databricks to count it updated.
        sets = [f"{f} = source.{f}" for f, has in zip(fields, pattern, strict=True) if has] or [
            f"{fields[0]} = target.{fields[0]}"]
        condition = "".join(f" AND source.{f} IS {'NOT ' if has else ''}NULL"
                            for f, has in zip(fields, pattern, strict=True)) if len(patterns) > 1 else ""
        clauses.append(f"WHEN MATCHED{condition} THEN UPDATE SET {', '.join(sets)} ")
    return "".join(clauses)


def parsed_marker(marker: str, nested_type: str | None) -> str:
    """A parameter marker, or for a nested column its JSON text parsed as the column's type: a
    STRING is not assigned to an ARRAY column. FAILFAST: text that is not of that type fails the
    statement, where the default would write NULL."""
    if nested_type is None:
        return marker
    return f"from_json({marker}, '{nested_type}', map('mode', 'FAILFAST'))"


def merge_statement(table: str, key: str, fields: list[str], present: list[tuple[bool, ...]],
                    nested_types: Sequence[str | None]) -> str:
    """The MERGE for one batch; `present[row][i]`: whether that row has a value for `fields[i]`;
    `nested_types[i]`: the nested type of the column `fields[i]` goes to, if it has one."""
    columns = [key, *fields]
    selects = []
    for row in range(len(present)):
        names = [f":k{row}", *(parsed_marker(f":v{row}_{i}", nested_types[i]) for i in range(len(fields)))]
        if row == 0:
            selects.append("SELECT " + ", ".join(f"{n} AS {quote_identifier(c)}" for n, c in zip(
                names, columns, strict=True)))
        else:
            selects.append("SELECT " + ", ".join(names))
    quoted = [quote_identifier(c) for c in columns]
    sql = (f"MERGE INTO {quote_table(table)} AS target USING ({' UNION ALL '.join(selects)}) AS source "
           f"ON target.{quoted[0]} = source.{quoted[0]} ")
    sql += matched_clauses(quoted[1:], present)
    sources = ", ".join("source." + q for q in quoted)
    sql += f"WHEN NOT MATCHED THEN INSERT ({', '.join(quoted)}) VALUES ({sources})"
    return sql


def nested_type(column: ColumnInfo) -> str | None:
    """An ARRAY, MAP or STRUCT column's type as from_json takes it (`ARRAY<STRING>`), else None; also
    None for a type text that a SQL string literal would not hold as it is."""
    text = column.type_text or ""
    if column_type(column).name not in NESTED_TYPES or not text or "'" in text or "\\" in text:
        return None
    return text


@dataclass
class MergeRow:
    key: Any
    texts: list[str | None]  # the parameter values: key, then the fields

    @property
    def size(self) -> int:
        return sum(len(t.encode("utf-8")) for t in self.texts if t is not None)

    @property
    def present(self) -> tuple[bool, ...]:
        """For each field, whether the row has a value for it."""
        return tuple(t is not None for t in self.texts[1:])


def statement_batches(rows: list[MergeRow], most: int) -> Iterator[list[MergeRow]]:
    """Consecutive rows, as many per MERGE as `most` and Databricks' parameter limits allow."""
    size = max(1, min(most, MAX_PARAMETERS // len(rows[0].texts)))
    batch: list[MergeRow] = []
    used = 0
    for row in rows:
        if batch and (len(batch) == size or used + row.size > MAX_PARAMETER_BYTES):
            yield batch
            batch, used = [], 0
        batch.append(row)
        used += row.size
    if batch:
        yield batch


def describe_keys(batch: list[MergeRow]) -> str:
    if len(batch) == 1:
        return f"key {batch[0].key!r}"
    return f"keys {batch[0].key!r}..{batch[-1].key!r} ({len(batch)} rows)"


@dataclass
class DatabricksTableSink:
    uri: StoreURI
    settings: DatabricksSettings
    choice: FieldChoice

    @property
    def key(self) -> str:
        return self.uri.one("key") or "id"

    def check(self) -> None:
        runner = StatementRunner(self.settings, self.uri.one("warehouse"))
        columns = self._columns(runner, self.uri.netloc)
        self.choice.check(f"databricks:{self.uri.netloc}", columns)

    def write(self, records: pd.DataFrame) -> dict[str, Any]:
        from databricks.sdk.service.sql import StatementParameterListItem

        table = self.uri.netloc
        counts = SinkCounts("databricks", table)
        if records.empty:
            return counts.as_dict()
        runner = StatementRunner(self.settings, self.uri.one("warehouse"))
        columns = self._columns(runner, table)
        fields = [f for f in self.choice.to_write(records, columns) if f != self.key]
        nested_types = [columns.nested_type(f) if columns else None for f in fields]
        if 1 + len(fields) > MAX_PARAMETERS:
            raise UserInputError(f"databricks:{table}: the key and {len(fields)} fields need "
                                 f"{1 + len(fields)} parameters per row, Databricks takes {MAX_PARAMETERS} "
                                 "per statement: name fewer with ?fields=")
        rows: list[tuple[Any, list[Any]]] = []
        for row in records.to_dict(orient="records"):
            key = store_key_for(row, f"databricks:{table}")  # another table's key names no row here
            if is_missing(key):
                key = row.get(self.key)
            if is_missing(key):
                counts.fail(1, f"{row.get('_id')}: no value in key column {self.key!r}")
                continue
            rows.append((plain(key, strict_json=True), [plain(row[f], strict_json=True) for f in fields]))
        if not rows:
            return counts.as_dict()
        key_type = sql_type([k for k, _ in rows])
        types = [key_type, *(sql_type([values[i] for _, values in rows]) for i in range(len(fields)))]
        merge_rows = self._last_per_key(rows, key_type, counts)
        done = 0
        for batch in statement_batches(merge_rows, self.settings.rows_per_statement):
            parameters = [StatementParameterListItem(name=f"k{index}" if i == 0 else f"v{index}_{i - 1}",
                                                     type=types[i], value=text)
                          for index, row in enumerate(batch) for i, text in enumerate(row.texts)]
            statement = merge_statement(table, self.key, fields, [row.present for row in batch], nested_types)
            try:
                columns, result = runner.run(statement, parameters)
            except DatabricksUnreachableError as exc:
                counts.stop_unanswered(exc, len(merge_rows) - done, describe_keys(merge_rows[done:]))
                break
            except DatabricksAccessError:
                raise
            except UserInputError as exc:
                counts.fail(len(batch), f"{describe_keys(batch)}: {exc}")
            else:
                self._count(counts, columns, result, len(batch))
            done += len(batch)
        return counts.as_dict()

    @staticmethod
    def _columns(runner: StatementRunner, table: str) -> TableColumns | None:
        """The table's columns; None when the statement failed for a reason other than a missing
        table (then every MERGE fails with its own reason, or succeeds)."""
        try:
            columns, _ = runner.run(f"SELECT * FROM {quote_table(table)} LIMIT 0")
        except DatabricksAccessError:  # unreachable, or the token may not: nothing could be written
            raise
        except UserInputError as exc:
            if "TABLE_OR_VIEW_NOT_FOUND" in str(exc):  # Databricks' error class for a missing table
                raise UserInputError(f"databricks:{table}: cannot write: {exc}") from None
            return None
        return TableColumns((str(c.name).lower(), nested_type(c)) for c in columns)

    @staticmethod
    def _last_per_key(rows: list[tuple[Any, list[Any]]], key_type: str,
                      counts: SinkCounts) -> list[MergeRow]:
        """One row per key, the last; each earlier row with that key is counted as failed."""
        # Keys compare as the database will: as text, or as numbers when they go as DOUBLE (1 == 1.0).
        identities = [float(k) if key_type == "DOUBLE" else as_parameter_text(k) for k, _ in rows]
        last = {identity: index for index, identity in enumerate(identities)}
        repeats = Counter(identities)
        kept = []
        for index, (key, values) in enumerate(rows):
            if last[identities[index]] != index:
                continue
            if repeats[identities[index]] > 1:
                counts.fail(repeats[identities[index]] - 1,
                            f"key {key!r}: {repeats[identities[index]]} records have this key; only the last "
                            "was written (a MERGE takes one source row per target row)")
            kept.append(MergeRow(key, [as_parameter_text(key), *(as_parameter_text(v) for v in values)]))
        return kept

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

    def check(self) -> None:
        pass  # a new file in a volume: nothing to check before the records exist

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
        except (TimeoutError, OSError) as exc:  # the SDK gave up retrying; OSError includes requests'
            reason = unreachable(self.settings, exc)
            raise UserInputError(f"databricks:{path}: cannot upload: {reason}") from None
        counts.created = len(frame)
        return counts.as_dict()


def open_databricks_sink(uri: str,
                         default_fields: Sequence[str],
                         optional_fields: Sequence[str]) -> DatabricksTableSink | DatabricksVolumeSink:
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
    choice = FieldChoice.of(parsed.many("fields"), default_fields, optional_fields)
    return DatabricksTableSink(parsed, settings, choice)


register_sink_scheme("databricks", open_databricks_sink)
