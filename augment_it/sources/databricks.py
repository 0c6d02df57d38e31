"""Databricks: read a table or a SQL query through the SQL Statement Execution API.

URI: `databricks://CATALOG.SCHEMA.TABLE?where=...&key=id` or `databricks://?query=SELECT ...`,
with optional `warehouse=ID` (else DATABRICKS_WAREHOUSE_ID) and `block=NAME`. Statements run on a
SQL warehouse with INLINE disposition and JSON_ARRAY format; a statement still PENDING or RUNNING
after the wait is polled, and results are read chunk by chunk (`next_chunk_index`). JSON_ARRAY
sends every value as text: values are converted back by the column types of the manifest.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr

from augment_it.connections import STORE_KEY, ConnectionSettings, StoreURI, load_settings
from augment_it.errors import UserInputError
from augment_it.records import ROW, InputError
from augment_it.sources import SOURCE, SourceRead, register_scheme

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.sql import StatementParameterListItem, StatementResponse

INTEGER_TYPES = {"BYTE", "SHORT", "INT", "LONG"}
FLOAT_TYPES = {"FLOAT", "DOUBLE", "DECIMAL"}
NESTED_TYPES = {"ARRAY", "MAP", "STRUCT"}


class DatabricksAccessError(UserInputError):
    """The workspace cannot be used at all (unreachable, bad token, no warehouse): not one statement."""


class DatabricksSettings(ConnectionSettings):
    ENV: ClassVar[dict[str, str]] = {"host": "DATABRICKS_HOST", "token": "DATABRICKS_TOKEN",
                                     "warehouse_id": "DATABRICKS_WAREHOUSE_ID",
                                     "poll_seconds": "AUGMENT_DATABRICKS_POLL_SECONDS"}
    BLOCK: ClassVar[str] = "DatabricksConnection"
    SERVICE: ClassVar[str] = "Databricks"

    host: str
    token: SecretStr
    warehouse_id: str | None = None
    wait_timeout: str = "30s"  # how long execute_statement waits before we poll: 0s or 5s..50s
    poll_seconds: float = 1.0
    statement_timeout_seconds: float = 900.0
    rows_per_statement: int = 200  # rows per MERGE statement


def workspace_client(settings: DatabricksSettings) -> WorkspaceClient:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    # PAT auth only: explicit settings must not be mixed with whatever else the machine has.
    # The plain Files API (one PUT per file) is enough for export files and is what the docs show.
    config = Config(host=settings.host.rstrip("/"), token=settings.token.get_secret_value(),
                    auth_type="pat", disable_experimental_files_api_client=True)
    return WorkspaceClient(config=config)


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
        self.client = workspace_client(settings)

    def run(self, statement: str,
            parameters: list[StatementParameterListItem] | None = None) -> tuple[list[Any], list[list[Any]]]:
        import requests
        from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated
        from databricks.sdk.service.sql import (
            Disposition,
            ExecuteStatementRequestOnWaitTimeout,
            Format,
            StatementState,
        )

        api = self.client.statement_execution
        try:
            response = api.execute_statement(
                statement=statement, warehouse_id=self.warehouse_id, parameters=parameters,
                disposition=Disposition.INLINE, format=Format.JSON_ARRAY,
                wait_timeout=self.settings.wait_timeout,
                on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE)
            response = self._wait(response)
            state = response.status.state if response.status else None
            if state != StatementState.SUCCEEDED:
                error = response.status.error if response.status else None
                detail = (error.message if error and error.message else "") or "no message"
                raise UserInputError(f"Databricks statement {state.value if state else 'unknown'}: {detail}")
            columns = list(response.manifest.schema.columns or []) if response.manifest and \
                response.manifest.schema else []
            rows = list(response.result.data_array or []) if response.result else []
            next_chunk = response.result.next_chunk_index if response.result else None
            while next_chunk is not None:
                chunk = api.get_statement_result_chunk_n(response.statement_id, next_chunk)
                rows.extend(chunk.data_array or [])
                next_chunk = chunk.next_chunk_index
        except (Unauthenticated, PermissionDenied, NotFound) as exc:
            raise DatabricksAccessError(f"Databricks at {self.settings.host}: "
                                        f"{describe_sdk_error(exc)}") from None
        except DatabricksError as exc:
            raise UserInputError(f"Databricks at {self.settings.host}: {describe_sdk_error(exc)}") from None
        except requests.RequestException as exc:
            raise DatabricksAccessError(f"cannot reach Databricks at {self.settings.host}: "
                                        f"{type(exc).__name__}") from None
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


def convert(value: Any, type_name: str) -> Any:
    """A JSON_ARRAY cell (text or null) as the Python value its column type says it is."""
    if value is None:
        return None
    if type_name in INTEGER_TYPES:
        return int(value)
    if type_name in FLOAT_TYPES:
        return float(value)
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
        types = [(c.type_name.value if c.type_name else "STRING") for c in columns]
        read = SourceRead()
        for row_number, values in enumerate(rows, start=1):
            record = {n: convert(v, t) for n, v, t in zip(names, values, types, strict=False)}
            key = record.get(self.key)
            where = f"{name}#{key if key is not None else row_number}"
            if key is not None:
                record[STORE_KEY] = key
            read.records.append({**record, ROW: row_number, SOURCE: where})
        return read


def open_databricks(uri: str) -> DatabricksSource:
    parsed = StoreURI.parse(uri)
    return DatabricksSource(parsed, load_settings(DatabricksSettings, parsed.one("block")))


register_scheme("databricks", open_databricks)
