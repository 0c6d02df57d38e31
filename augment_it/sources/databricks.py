"""Databricks: read a table or a SQL query through the SQL Statement Execution API.

URI: `databricks://CATALOG.SCHEMA.TABLE?where=...&key=id` or `databricks://?query=SELECT ...`,
with optional `warehouse=ID` (else DATABRICKS_WAREHOUSE_ID) and `block=NAME`. Statements run on a
SQL warehouse with INLINE disposition and JSON_ARRAY format; a statement still PENDING or RUNNING
after the wait is polled, and results are read chunk by chunk (`next_chunk_index`). A result the
manifest marks `truncated` is an error, never partial data. INLINE results stop at 25 MiB (a
bigger one fails the statement, asking for EXTERNAL_LINKS): such a statement runs again with
EXTERNAL_LINKS, and each chunk is downloaded from its link, with the link's own headers and without
the workspace token, which the cloud store the link points to would refuse beside its signature.

JSON_ARRAY sends every value as text: values are converted back by the column types of the
manifest (`type_name`, else `type_text` for a type the SDK does not know). DECIMAL never loses
digits: scale 0 gives an int, up to 15 digits a float (exact for that many), more digits the
exact text (a `decimal.Decimal` would become quoted JSON text in the run's Parquet files).

The SDK retries a host it cannot reach, and 429/503 answers, for `retry_timeout_seconds`
(AUGMENT_DATABRICKS_RETRY_SECONDS, default 90 s; the SDK's own is 300 s, spent once more by the
probe in `Config()`), then raises a bare TimeoutError: that becomes a DatabricksUnreachableError
naming the host.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr

from augment_it.connections import ConnectionSettings, StoreURI, load_settings
from augment_it.errors import UserInputError
from augment_it.records import InputError
from augment_it.sources import SourceRead, register_scheme

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.sql import (
        ColumnInfo,
        ExternalLink,
        ResultData,
        StatementParameterListItem,
        StatementResponse,
    )

INTEGER_TYPES = {"BYTE", "SHORT", "INT", "LONG"}
FLOAT_TYPES = {"FLOAT", "DOUBLE"}
NESTED_TYPES = {"ARRAY", "MAP", "STRUCT"}
# The type_name for a type_text, read when type_name is absent or newer than the SDK (which turns an
# unknown type_name into None); other names (DOUBLE, DECIMAL, ARRAY...) are the same in both.
TYPE_TEXT_NAMES = {"TINYINT": "BYTE", "SMALLINT": "SHORT", "INTEGER": "INT", "BIGINT": "LONG",
                   "REAL": "FLOAT", "DEC": "DECIMAL", "NUMERIC": "DECIMAL", "VARCHAR": "STRING",
                   "CHAR": "STRING"}
TYPE_TEXT = re.compile(r"\s*([A-Za-z_]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?")
FLOAT_EXACT_DIGITS = 15  # a decimal of at most 15 significant digits survives float() and back


class DatabricksAccessError(UserInputError):
    """The workspace cannot be used at all (unreachable, bad token, no warehouse): not one statement."""


class DatabricksUnreachableError(DatabricksAccessError):
    """No answer from the host (refused, timed out, or 429/503 for the whole retry time)."""


class DatabricksSettings(ConnectionSettings):
    ENV: ClassVar[dict[str, str]] = {"host": "DATABRICKS_HOST", "token": "DATABRICKS_TOKEN",
                                     "warehouse_id": "DATABRICKS_WAREHOUSE_ID",
                                     "poll_seconds": "AUGMENT_DATABRICKS_POLL_SECONDS",
                                     "retry_timeout_seconds": "AUGMENT_DATABRICKS_RETRY_SECONDS"}
    BLOCK: ClassVar[str] = "DatabricksConnection"
    SERVICE: ClassVar[str] = "Databricks"

    host: str
    token: SecretStr
    warehouse_id: str | None = None
    wait_timeout: str = "30s"  # how long execute_statement waits before we poll: 0s or 5s..50s
    poll_seconds: float = 1.0
    statement_timeout_seconds: float = 900.0
    rows_per_statement: int = 200  # at most, per MERGE: fewer when 255 parameters or 1 MB run out
    # How long the SDK retries one request to a host that does not answer (or answers 429/503);
    # 0 would mean the SDK's 300 s.
    retry_timeout_seconds: int = Field(default=90, ge=1)
    http_timeout_seconds: float = 60.0  # one HTTP request: keep it above wait_timeout


def workspace_client(settings: DatabricksSettings) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    # PAT auth only: explicit settings must not be mixed with whatever else the machine has.
    # The plain Files API (one PUT per file) is enough for export files and is what the docs show.
    try:
        config = Config(host=settings.host.rstrip("/"), token=settings.token.get_secret_value(),
                        auth_type="pat", disable_experimental_files_api_client=True,
                        retry_timeout_seconds=settings.retry_timeout_seconds,
                        http_timeout_seconds=settings.http_timeout_seconds)
    except ValueError as exc:  # the SDK masks the token in its message
        raise DatabricksAccessError(f"Databricks settings for {settings.host!r} are not usable: "
                                    f"{exc}") from None
    return WorkspaceClient(config=config)


def unreachable(settings: DatabricksSettings, exc: BaseException) -> DatabricksUnreachableError:
    """The error for a request the SDK gave up on: its TimeoutError carries the last failure as cause."""
    from databricks.sdk.errors import DatabricksError

    cause = exc.__cause__ if isinstance(exc, TimeoutError) and exc.__cause__ else exc
    what = describe_sdk_error(cause) if isinstance(cause, DatabricksError) else type(cause).__name__
    retried = isinstance(exc, TimeoutError)
    waited = f" after retrying for {settings.retry_timeout_seconds} s" if retried else ""
    return DatabricksUnreachableError(f"cannot reach Databricks at {settings.host}{waited} ({what})")


def quote_identifier(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_table(name: str) -> str:
    parts = name.split(".")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise InputError(f"{name!r} is not a table name: use CATALOG.SCHEMA.TABLE")
    return ".".join(quote_identifier(p) for p in parts)


def describe_sdk_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


class StatementRunner:
    """Runs one statement to a terminal state and returns its columns and rows."""

    def __init__(self, settings: DatabricksSettings, warehouse_id: str | None) -> None:
        self.settings = settings
        self.warehouse_id = warehouse_id or settings.warehouse_id
        if not self.warehouse_id:
            raise DatabricksAccessError("Databricks needs a SQL warehouse: set DATABRICKS_WAREHOUSE_ID, the "
                                 "DatabricksConnection block's warehouse_id, or ?warehouse=ID in the URI")
        self._client: WorkspaceClient | None = None

    @property
    def client(self) -> WorkspaceClient:
        # Built on first use, inside run()'s error handling: Config() already calls the host.
        if self._client is None:
            self._client = workspace_client(self.settings)
        return self._client

    def run(self, statement: str, parameters: list[StatementParameterListItem] | None = None
            ) -> tuple[list[ColumnInfo], list[list[Any]]]:
        try:
            return self._run(statement, parameters, external_links=False)
        except UserInputError as exc:
            if "disposition=EXTERNAL_LINKS" not in str(exc):  # Databricks' words for a result over 25 MiB
                raise
        return self._run(statement, parameters, external_links=True)

    def _run(self, statement: str, parameters: list[StatementParameterListItem] | None,
             external_links: bool) -> tuple[list[ColumnInfo], list[list[Any]]]:
        from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated
        from databricks.sdk.service.sql import (
            Disposition,
            ExecuteStatementRequestOnWaitTimeout,
            Format,
            StatementState,
        )

        try:
            api = self.client.statement_execution
            response = api.execute_statement(
                statement=statement, warehouse_id=self.warehouse_id, parameters=parameters,
                disposition=Disposition.EXTERNAL_LINKS if external_links else Disposition.INLINE,
                format=Format.JSON_ARRAY,
                wait_timeout=self.settings.wait_timeout,
                on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE)
            response = self._wait(response)
            state = response.status.state if response.status else None
            if state != StatementState.SUCCEEDED:
                error = response.status.error if response.status else None
                detail = (error.message if error and error.message else "") or "no message"
                raise UserInputError(f"Databricks statement {state.value if state else 'unknown'}: {detail}")
            manifest = response.manifest
            if manifest and manifest.truncated:
                # Part of a table read as if it were all of it would be written back as the whole.
                raise UserInputError(f"Databricks truncated the result of statement {response.statement_id}"
                                     f" ({manifest.total_row_count} rows kept): nothing read; select fewer "
                                     "rows (?where= or a narrower query)")
            columns = list(manifest.schema.columns or []) if manifest and manifest.schema else []
            rows, next_chunk = chunk_rows(response.result)
            while next_chunk is not None:
                chunk = api.get_statement_result_chunk_n(response.statement_id, next_chunk)
                more, next_chunk = chunk_rows(chunk)
                rows.extend(more)
        except (Unauthenticated, PermissionDenied, NotFound) as exc:
            raise DatabricksAccessError(f"Databricks at {self.settings.host}: "
                                        f"{describe_sdk_error(exc)}") from None
        except DatabricksError as exc:
            raise UserInputError(f"Databricks at {self.settings.host}: {describe_sdk_error(exc)}") from None
        except (TimeoutError, OSError) as exc:  # OSError includes requests' errors
            raise unreachable(self.settings, exc) from None
        return columns, rows

    def _wait(self, response: StatementResponse) -> StatementResponse:
        from databricks.sdk.service.sql import StatementState

        deadline = time.monotonic() + self.settings.statement_timeout_seconds
        api = self.client.statement_execution
        while response.status and response.status.state in (StatementState.PENDING, StatementState.RUNNING):
            if time.monotonic() > deadline:
                api.cancel_execution(response.statement_id)
                raise UserInputError(f"Databricks statement {response.statement_id} did not finish in "
                                     f"{self.settings.statement_timeout_seconds:g} s; cancelled")
            time.sleep(self.settings.poll_seconds)
            response = api.get_statement(response.statement_id)
        return response


def chunk_rows(result: ResultData | None) -> tuple[list[list[Any]], int | None]:
    """A result chunk's rows, inline or from its external links, and the next chunk's index."""
    if result is None:
        return [], None
    if not result.external_links:
        return list(result.data_array or []), result.next_chunk_index
    rows = [row for link in result.external_links for row in download(link)]
    return rows, result.external_links[-1].next_chunk_index


def download(link: ExternalLink) -> list[list[Any]]:
    """A chunk's rows from its external link. Errors name the link's host only: the rest of the
    URL is a credential."""
    import requests

    host = urlsplit(str(link.external_link)).netloc
    where = f"Databricks result chunk {link.chunk_index} (external link on {host})"
    try:
        response = requests.get(str(link.external_link), headers=link.http_headers or {}, timeout=120)
    except requests.RequestException as exc:
        raise UserInputError(f"{where}: cannot download it: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise UserInputError(f"{where}: answered {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        raise UserInputError(f"{where}: the answer is not the JSON rows asked for") from None


@dataclass(frozen=True)
class ColumnType:
    name: str  # a type_name: LONG, DECIMAL, STRING...
    precision: int | None = None
    scale: int | None = None


def column_type(column: ColumnInfo) -> ColumnType:
    """A manifest column's type: its type_name, else the base type of its type_text (e.g. DECIMAL(10,2))."""
    match = TYPE_TEXT.match(column.type_text or "")
    base = match.group(1).upper() if match else ""
    name = column.type_name.value if column.type_name else TYPE_TEXT_NAMES.get(base, base) or "STRING"
    precision, scale = column.type_precision, column.type_scale
    if match and name == "DECIMAL" and TYPE_TEXT_NAMES.get(base, base) == "DECIMAL":
        # DECIMAL(p) has scale 0 and a bare DECIMAL is DECIMAL(10,0) (Databricks SQL reference).
        precision = precision if precision is not None else int(match.group(2) or 10)
        scale = scale if scale is not None else int(match.group(3) or 0)
    return ColumnType(name, precision, scale)


def decimal_value(text: str, column: ColumnType) -> int | float | str:
    if column.scale == 0:
        return int(Decimal(text))
    if column.scale is not None and column.precision is not None and column.precision <= FLOAT_EXACT_DIGITS:
        return float(text)
    return text  # more digits than a float keeps, or a scale we do not know: the exact text


def convert(value: Any, column: ColumnType) -> Any:
    """A JSON_ARRAY cell (text or null) as the Python value its column type says it is."""
    if value is None:
        return None
    type_name = column.name
    if type_name in INTEGER_TYPES:
        return int(value)
    if type_name in FLOAT_TYPES:
        return float(value)
    if type_name == "DECIMAL":
        return decimal_value(str(value), column)
    if type_name == "BOOLEAN":
        return str(value).lower() == "true"
    if type_name in NESTED_TYPES:
        try:
            return json.loads(value)
        except (TypeError, ValueError):
            return value
    return value


@dataclass
class DatabricksSource:
    uri: StoreURI
    settings: DatabricksSettings

    @property
    def key(self) -> str:
        return self.uri.one("key") or "id"

    def statement(self) -> tuple[str, str]:
        """The SQL to run and a short name for the records' `_source`."""
        query = self.uri.one("query")
        table = self.uri.netloc
        if query and table:
            raise InputError("databricks: give a table (databricks://CATALOG.SCHEMA.TABLE) or ?query=, "
                             "not both")
        if query:
            return query, "databricks:query"
        if not table:
            raise InputError("databricks: expected databricks://CATALOG.SCHEMA.TABLE or databricks://?query=SQL")
        sql = f"SELECT * FROM {quote_table(table)}"
        if where := self.uri.one("where"):
            sql += f" WHERE {where}"
        return sql, f"databricks:{table}"

    def read(self) -> SourceRead:
        sql, name = self.statement()
        try:
            columns, rows = StatementRunner(self.settings, self.uri.one("warehouse")).run(sql)
        except UserInputError as exc:
            raise InputError(f"{name}: {exc}") from None
        names = [c.name for c in columns]
        types = [column_type(c) for c in columns]
        read = SourceRead()
        for row_number, values in enumerate(rows, start=1):
            record = {n: convert(v, t) for n, v, t in zip(names, values, types, strict=False)}
            key = record.get(self.key)
            where = f"{name}#{key if key is not None else row_number}"
            read.add(record, row_number, where, store_key=key)
        return read


def open_databricks(uri: str) -> DatabricksSource:
    parsed = StoreURI.parse(uri)
    return DatabricksSource(parsed, load_settings(DatabricksSettings, parsed.one("block")))


register_scheme("databricks", open_databricks)
