"""A local stand-in for the Databricks SQL Statement Execution API and the Files API, as documented.

- `POST /api/2.0/sql/statements` (statement, warehouse_id, parameters, disposition, format,
  wait_timeout, on_wait_timeout, row_limit): INLINE supports only JSON_ARRAY; `wait_timeout` is
  `0s` or `5s`..`50s`. A statement answers PENDING/RUNNING for `pending_polls` polls, then
  SUCCEEDED with `manifest` (schema columns with `type_name`, `type_text` and, for DECIMAL,
  `type_precision`/`type_scale`; `total_chunk_count`, `chunks`, `truncated`) and the first chunk in
  `result` (`data_array` of text values, `next_chunk_index`); SQL errors end in FAILED with
  `status.error` (a missing table: `[TABLE_OR_VIEW_NOT_FOUND] ...`).
  `GET /api/2.0/sql/statements/{id}`, `GET .../result/chunks/{n}` and
  `POST .../cancel` as documented. MERGE answers num_affected/updated/deleted/inserted_rows.
- Native parameter limits (databricks-sql-python docs/parameters.md): more than 255 parameters or
  more than 1 MB of values is refused with 400 BAD_REQUEST, before the statement runs.
- Delta's MERGE rule: several source rows matching one target row fail the statement with
  DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE (DuckDB alone would apply them all).
- INLINE results over `inline_byte_limit` (25 MiB) fail the statement, as Databricks does, asking for
  `disposition=EXTERNAL_LINKS`. With EXTERNAL_LINKS (JSON_ARRAY format) `result` and each chunk
  carry `external_links`: presigned-style URLs (`GET /external/{id}/{n}`) answered with the chunk's
  rows without Databricks auth, and refused when a request sends an Authorization header, as a cloud
  store refuses a second auth mechanism (or, with `external_links_expired`, refused as expired).
- `row_limit` (the request's, or the stand-in's `result_row_limit`) cuts the result and sets
  `manifest.truncated`. `type_names` replaces (or with None, leaves out) a column's `type_name`,
  as for a type newer than the SDK.
- `PUT /api/2.0/fs/files{path}?overwrite=` uploads a file into a registered volume
  (`/Volumes/catalog/schema/volume/...`); `GET` downloads it.
- `GET /.well-known/databricks-config` (host metadata the SDK probes) names a workspace id.
- Errors as `{"error_code", "message"}`: 401 UNAUTHENTICATED, 404 RESOURCE_DOES_NOT_EXIST,
  400 INVALID_PARAMETER_VALUE, 409 ALREADY_EXISTS, and queued faults (e.g. 429 with Retry-After),
  which may start only after some requests (`fail_next(after=N)`).

SQL runs in DuckDB: Databricks' backtick identifiers and `:name` parameter markers are translated
(`:name` becomes a typed `CAST($name AS ...)` using the parameter's `type`), and so is
`from_json(:name, 'ARRAY<...>'[, map('mode', 'FAILFAST')])` (permissive: NULL for text that does not
parse as the type; FAILFAST: the statement fails). Tables may have list columns (DuckDB `VARCHAR[]`),
described as Databricks' ARRAY and sent as JSON text. As in Databricks, a STRING is not assigned to
an ARRAY column by MERGE (DuckDB alone would cast it).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import duckdb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.standins.background import BackgroundServer

DUCK_TYPES = {"STRING": "VARCHAR", "BIGINT": "BIGINT", "LONG": "BIGINT", "INT": "INTEGER",
              "INTEGER": "INTEGER", "SMALLINT": "SMALLINT", "TINYINT": "TINYINT", "DOUBLE": "DOUBLE",
              "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "TIMESTAMP"}
# DuckDB result type -> Databricks (type_name, type_text)
TYPE_NAMES = {"VARCHAR": ("STRING", "STRING"), "BIGINT": ("LONG", "BIGINT"), "INTEGER": ("INT", "INT"),
              "SMALLINT": ("SHORT", "SMALLINT"), "TINYINT": ("BYTE", "TINYINT"),
              "DOUBLE": ("DOUBLE", "DOUBLE"), "FLOAT": ("FLOAT", "FLOAT"), "BOOLEAN": ("BOOLEAN", "BOOLEAN"),
              "DATE": ("DATE", "DATE"), "TIMESTAMP": ("TIMESTAMP", "TIMESTAMP"),
              "HUGEINT": ("DECIMAL", "DECIMAL(38,0)")}
DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)", re.I)
ARRAY = re.compile(r"ARRAY\s*<(.+)>", re.I)
# from_json(<a translated marker>, '<type>'[, map('mode', 'FAILFAST')])
FROM_JSON = re.compile(r"from_json\(\s*(CAST\(\$\w+ AS \w+\))\s*,\s*'([^']+)'\s*"
                       r"(,\s*map\(\s*'mode'\s*,\s*'FAILFAST'\s*\)\s*)?\)", re.I)
MAX_PARAMETERS = 255  # native parameter markers per statement
MAX_PARAMETER_BYTES = 1_000_000  # all parameter values of one statement: "1MB"
INLINE_BYTE_LIMIT = 26_214_400  # 25 MiB of result with disposition=INLINE


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class Statement:
    id: str
    polls_left: int
    state: str = "PENDING"
    final: str = "SUCCEEDED"  # the state reached once the pending polls are used up
    columns: list[dict[str, Any]] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    truncated: bool = False
    disposition: str = "INLINE"


def translate(sql: str, types: dict[str, str]) -> str:
    """Databricks SQL → DuckDB: backticks to double quotes and `:name` to a typed `$name`."""
    out, index, quote = [], 0, ""
    while index < len(sql):
        char = sql[index]
        if quote:
            out.append(char)
            if char == quote:
                quote = ""
            index += 1
            continue
        if char == "'":
            quote = "'"
            out.append(char)
        elif char == "`":
            end = sql.index("`", index + 1)
            name = sql[index + 1:end].replace('"', '""')
            out.append(f'"{name}"')
            index = end + 1
            continue
        elif char == ":" and (match := re.match(r":([A-Za-z_][A-Za-z0-9_]*)", sql[index:])):
            name = match.group(1)
            if name not in types:
                raise ApiError(200, "UNBOUND_SQL_PARAMETER", f"[UNBOUND_SQL_PARAMETER] Found the unbound "
                               f"parameter: {name}.")
            out.append(f"CAST(${name} AS {_duck_type(types[name])})")
            index += len(match.group(0))
            continue
        else:
            out.append(char)
        index += 1
    return FROM_JSON.sub(_from_json, "".join(out))


def _from_json(match: re.Match[str]) -> str:
    cast = "CAST" if match.group(3) else "TRY_CAST"
    return f"{cast}(CAST({match.group(1)} AS JSON) AS {_duck_type(match.group(2))})"


def _duck_type(kind: str) -> str:
    if match := ARRAY.fullmatch(kind.strip()):
        return f"{_duck_type(match.group(1))}[]"
    if match := DECIMAL.fullmatch(kind.strip()):
        return f"DECIMAL({match.group(1)},{match.group(2)})"
    return DUCK_TYPES.get(kind, "VARCHAR")


def _value(text: str | None, kind: str) -> Any:
    if text is None:
        return None
    if kind in {"BIGINT", "LONG", "INT", "INTEGER", "SMALLINT", "TINYINT"}:
        return int(text)
    if DECIMAL.fullmatch(kind.strip()) or kind == "DECIMAL":
        return Decimal(text)
    if kind in {"DOUBLE", "FLOAT"}:
        return float(text)
    if kind == "BOOLEAN":
        return text.lower() == "true"
    return text


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # JSON_ARRAY sends an ARRAY as its JSON text
        return json.dumps(value)
    return str(value)


class DatabricksStandin(BackgroundServer):
    def __init__(self, token: str = "dapi-standin", warehouse_id: str = "wh-standin",
                 chunk_rows: int = 1000, pending_polls: int = 0) -> None:
        self.token = token
        self.warehouse_id = warehouse_id
        self.chunk_rows = chunk_rows
        self.pending_polls = pending_polls
        self.result_row_limit: int | None = None  # a row_limit on every statement, as if requested
        self.inline_byte_limit = INLINE_BYTE_LIMIT
        self.external_links_expired = False  # external links answer 403, as after their expiration
        self.type_names: dict[str, str | None] = {}  # column name -> type_name sent instead (None: none)
        self.statement_parameters: list[int] = []  # how many parameters each statement had
        self.fault_after = 0  # requests served before the queued faults start
        self.db = duckdb.connect()
        self.catalogs: set[str] = set()
        self.volumes: set[tuple[str, str, str]] = set()
        self.files: dict[str, bytes] = {}
        self.statements: dict[str, Statement] = {}
        self.requests: list[dict[str, Any]] = []
        self.faults: deque[tuple[int, str, str, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        routes = [
            Route("/api/2.0/sql/statements", self._execute, methods=["POST"]),
            Route("/api/2.0/sql/statements/", self._execute, methods=["POST"]),
            Route("/api/2.0/sql/statements/{id}", self._get, methods=["GET"]),
            Route("/api/2.0/sql/statements/{id}/result/chunks/{n:int}", self._chunk, methods=["GET"]),
            Route("/api/2.0/sql/statements/{id}/cancel", self._cancel, methods=["POST"]),
            Route("/api/2.0/fs/files/{path:path}", self._file, methods=["PUT", "GET", "HEAD"]),
            Route("/.well-known/databricks-config", self._host_metadata, methods=["GET"]),
            Route("/external/{id}/{n:int}", self._external, methods=["GET"]),
            Route("/{rest:path}", self._unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
        ]
        super().__init__(Starlette(routes=routes))

    # -------------------------------------------------------------- test helpers
    def add_table(self, name: str, columns: dict[str, str], rows: list[dict[str, Any]] = ()) -> None:
        catalog, schema, table = name.split(".")
        with self._lock:
            if catalog not in self.catalogs:
                self.db.execute(f"ATTACH ':memory:' AS \"{catalog}\"")
                self.catalogs.add(catalog)
            self.db.execute(f'CREATE SCHEMA IF NOT EXISTS "{catalog}"."{schema}"')
            spec = ", ".join(f'"{c}" {t}' for c, t in columns.items())
            self.db.execute(f'CREATE TABLE "{catalog}"."{schema}"."{table}" ({spec})')
            for row in rows:
                names = ", ".join(f'"{n}"' for n in row)
                marks = ", ".join("?" for _ in row)
                self.db.execute(f'INSERT INTO "{catalog}"."{schema}"."{table}" ({names}) VALUES ({marks})',
                                list(row.values()))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.db.execute(sql).fetchall()

    def add_volume(self, catalog: str, schema: str, volume: str) -> None:
        self.volumes.add((catalog, schema, volume))

    def fail_next(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                  times: int = 1, after: int = 0) -> None:
        self.fault_after = after
        for _ in range(times):
            self.faults.append((status, code, message, headers or {}))

    # -------------------------------------------------------------- plumbing
    async def _guard(self, request: Request, action: Any) -> Response:
        self.requests.append({"method": request.method, "path": request.url.path})
        try:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")
            if self.faults and self.fault_after > 0:
                self.fault_after -= 1
            elif self.faults:
                status, code, message, headers = self.faults.popleft()
                raise ApiError(status, code, message, headers)
            return await action(request)
        except ApiError as exc:
            return JSONResponse({"error_code": exc.code, "message": exc.message}, status_code=exc.status,
                                headers=exc.headers)

    async def _host_metadata(self, request: Request) -> Response:
        """The unauthenticated discovery document the SDK reads when it builds its config."""
        self.requests.append({"method": request.method, "path": request.url.path})
        return JSONResponse({"oidc_endpoint": f"{self.url}/oidc", "workspace_id": "1234567890"})

    async def _unknown(self, request: Request) -> Response:
        self.requests.append({"method": request.method, "path": request.url.path})
        return JSONResponse({"error_code": "ENDPOINT_NOT_FOUND", "message": "No API found"}, status_code=404)

    def _response(self, statement: Statement) -> dict[str, Any]:
        body: dict[str, Any] = {"statement_id": statement.id, "status": {"state": statement.state}}
        if statement.state == "FAILED":
            body["status"]["error"] = statement.error
        if statement.state == "SUCCEEDED":
            chunks = self._chunks(statement)
            columns = [self._as_sent(column) for column in statement.columns]
            body["manifest"] = {
                "format": "JSON_ARRAY",
                "schema": {"column_count": len(columns), "columns": columns},
                "total_chunk_count": len(chunks),
                "chunks": [{"chunk_index": i, "row_offset": start, "row_count": len(rows)}
                           for i, (start, rows) in enumerate(chunks)],
                "total_row_count": len(statement.rows),
                "truncated": statement.truncated,
            }
            body["result"] = self._chunk_body(statement, 0)
        return body

    def _as_sent(self, column: dict[str, Any]) -> dict[str, Any]:
        if column["name"] not in self.type_names:
            return column
        sent = {k: v for k, v in column.items() if k != "type_name"}
        if self.type_names[column["name"]] is not None:
            sent["type_name"] = self.type_names[column["name"]]
        return sent

    def _chunks(self, statement: Statement) -> list[tuple[int, list[list[Any]]]]:
        size = max(1, self.chunk_rows)
        starts = range(0, len(statement.rows), size)
        return [(start, statement.rows[start:start + size]) for start in starts] or [(0, [])]

    def _chunk_body(self, statement: Statement, index: int) -> dict[str, Any]:
        chunks = self._chunks(statement)
        if not 0 <= index < len(chunks):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"chunk_index {index} is out of range")
        start, rows = chunks[index]
        body: dict[str, Any] = {"chunk_index": index, "row_offset": start, "row_count": len(rows)}
        if index + 1 < len(chunks):
            body["next_chunk_index"] = index + 1
            body["next_chunk_internal_link"] = (f"/api/2.0/sql/statements/{statement.id}"
                                                f"/result/chunks/{index + 1}")
        if statement.disposition == "EXTERNAL_LINKS":
            expires = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 900))
            link = {**body, "byte_count": len(json.dumps(rows).encode()), "expiration": expires,
                    "external_link": f"{self.url}/external/{statement.id}/{index}"}
            return {"external_links": [link]}
        return {**body, "data_array": rows}

    async def _execute(self, request: Request) -> Response:
        async def action(request: Request) -> Response:
            body = await request.json()
            if body.get("warehouse_id") != self.warehouse_id:
                raise ApiError(404, "RESOURCE_DOES_NOT_EXIST",
                               f"Warehouse {body.get('warehouse_id')} does not exist")
            if not isinstance(body.get("statement"), str) or not body["statement"].strip():
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "statement is required")
            disposition = body.get("disposition", "INLINE")
            fmt = body.get("format", "JSON_ARRAY")
            if disposition not in ("INLINE", "EXTERNAL_LINKS"):
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"unknown disposition {disposition}")
            if disposition == "INLINE" and fmt != "JSON_ARRAY":
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "INLINE disposition supports only JSON_ARRAY")
            if fmt != "JSON_ARRAY":
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"the stand-in serves no {fmt} results")
            wait = body.get("wait_timeout", "10s")
            match = re.fullmatch(r"(\d+)s", str(wait))
            if not match or not (int(match.group(1)) == 0 or 5 <= int(match.group(1)) <= 50):
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               "wait_timeout must be 0s or between 5s and 50s")
            parameters = body.get("parameters") or []
            self._check_parameters(parameters)
            limits = [n for n in (body.get("row_limit"), self.result_row_limit) if n is not None]
            statement = Statement(uuid.uuid4().hex, self.pending_polls, disposition=disposition)
            self._run(statement, body["statement"], parameters, min(limits) if limits else None)
            self._check_inline_size(statement)
            if statement.polls_left > 0:
                statement.final, statement.state = statement.state, "PENDING"
            self.statements[statement.id] = statement
            return JSONResponse(self._response(statement))
        return await self._guard(request, action)

    def _check_inline_size(self, statement: Statement) -> None:
        if statement.disposition != "INLINE" or statement.state != "SUCCEEDED":
            return
        if len(json.dumps(statement.rows).encode()) > self.inline_byte_limit:
            statement.state, statement.rows = "FAILED", []
            statement.error = {"error_code": "BAD_REQUEST", "message": (
                "Inline byte limit exceeded. Statements executed with disposition=INLINE can have a result "
                f"size of at most {self.inline_byte_limit} bytes. Please execute the statement with "
                "disposition=EXTERNAL_LINKS if you want to download the full result.")}

    async def _external(self, request: Request) -> Response:
        """A chunk's rows at its external link: no Databricks token, and none may be sent."""
        self.requests.append({"method": request.method, "path": request.url.path,
                              "authorization": request.headers.get("authorization")})
        if request.headers.get("authorization"):
            return Response("<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed"
                            "</Message></Error>", status_code=400, media_type="application/xml")
        if self.external_links_expired:
            return Response("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                            status_code=403, media_type="application/xml")
        statement = self.statements.get(request.path_params["id"])
        chunks = self._chunks(statement) if statement else []
        if statement is None or not 0 <= request.path_params["n"] < len(chunks):
            return Response("<Error><Code>NoSuchKey</Code></Error>", status_code=404,
                            media_type="application/xml")
        return JSONResponse(chunks[request.path_params["n"]][1])

    def _check_parameters(self, parameters: list[dict[str, Any]]) -> None:
        """Native parameters: at most 255 markers and 1 MB of values per statement."""
        self.statement_parameters.append(len(parameters))
        if len(parameters) > MAX_PARAMETERS:
            raise ApiError(400, "BAD_REQUEST", f"Parameterized query has too many parameters: "
                           f"{len(parameters)} parameters were given but the limit is {MAX_PARAMETERS}.")
        size = sum(len(str(p.get("value") or "").encode("utf-8")) for p in parameters)
        if size > MAX_PARAMETER_BYTES:
            raise ApiError(400, "BAD_REQUEST", f"Parameterized query values are {size} bytes but the limit "
                           f"is {MAX_PARAMETER_BYTES}.")

    def _run(self, statement: Statement, sql: str, parameters: list[dict[str, Any]],
             row_limit: int | None = None) -> None:
        types = {p["name"]: p.get("type", "STRING").upper() for p in parameters}
        values = {p["name"]: _value(p.get("value"), types[p["name"]]) for p in parameters}
        try:
            translated = translate(sql, types)
            used = {name: values[name] for name in values if f"${name} " in translated + " "
                    or f"${name})" in translated}
            with self._lock:
                if re.match(r"\s*MERGE\b", sql, flags=re.I):
                    target = re.match(r'\s*MERGE\s+INTO\s+([^\s]+)', translated, flags=re.I).group(1)
                    self._check_one_source_row_per_target(translated, used)
                    self._check_assignable(translated, used)
                    before = self.db.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                    affected = self.db.execute(translated, used).fetchone()[0]
                    after = self.db.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                    inserted = after - before
                    statement.columns = [_column(n, "BIGINT", i) for i, n in enumerate(
                        ["num_affected_rows", "num_updated_rows", "num_deleted_rows", "num_inserted_rows"])]
                    statement.rows = [[str(affected), str(affected - inserted), "0", str(inserted)]]
                else:
                    cursor = self.db.execute(translated, used)
                    description = cursor.description or []
                    rows = cursor.fetchall() if description else []
                    statement.columns = [_column(d[0], str(d[1]), i) for i, d in enumerate(description)]
                    if row_limit is not None and len(rows) > row_limit:
                        rows, statement.truncated = rows[:row_limit], True
                    statement.rows = [[_text(v) for v in row] for row in rows]
            statement.state = "SUCCEEDED"
        except duckdb.CatalogException as exc:
            statement.state = "FAILED"
            if match := re.search(r'Table with name "?([^\s"]+)"? does not exist', str(exc)):
                # Databricks' own error class and wording for a missing table.
                message = (f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{match.group(1)}` cannot be "
                           "found. Verify the spelling and correctness of the schema and catalog.")
            else:
                message = str(exc).splitlines()[0]
            statement.error = {"error_code": "BAD_REQUEST", "message": message}
        except (duckdb.Error, ApiError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc).splitlines()[0]
            statement.state = "FAILED"
            statement.error = {"error_code": "BAD_REQUEST", "message": message}

    def _check_one_source_row_per_target(self, merge: str, values: dict[str, Any]) -> None:
        """Delta fails a MERGE in which several source rows match one target row (DuckDB would not)."""
        if not (parts := _merge_parts(merge)):
            return
        target, alias, source, source_alias, on = parts
        doubles = (f"SELECT count(*) FROM (SELECT 1 FROM {target} AS {alias} JOIN ({source}) AS "
                   f"{source_alias} ON {on} GROUP BY {alias}.rowid HAVING count(*) > 1)")
        if self.db.execute(doubles, values).fetchone()[0]:
            raise ApiError(200, "BAD_REQUEST", "[DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_MERGE] "
                           "Cannot perform Merge as multiple source rows matched and attempted to modify the "
                           "same target row in the Delta table in possibly conflicting ways. SQLSTATE: 21506")

    def _check_assignable(self, merge: str, values: dict[str, Any]) -> None:
        """Databricks assigns no STRING to an ARRAY column (DuckDB would cast the text)."""
        if not (parts := _merge_parts(merge)):
            return
        target, source = parts[0], parts[2]
        columns = {name.lower(): kind for name, kind, *_ in self.db.execute(f"DESCRIBE {target}").fetchall()}
        sent = self.db.execute(f"SELECT * FROM ({source}) LIMIT 0", values).description or []
        for name, kind, *_ in sent:
            into = columns.get(name.lower(), "")
            if into.endswith("[]") and str(kind) == "VARCHAR":
                raise ApiError(200, "BAD_REQUEST", f'[DATATYPE_MISMATCH.CAST_WITHOUT_SUGGESTION] Cannot '
                               f'resolve "{name}" due to data type mismatch: cannot cast "STRING" to '
                               f'"{_column(name, into, 0)["type_text"]}". SQLSTATE: 42K09')

    async def _get(self, request: Request) -> Response:
        async def action(request: Request) -> Response:
            statement = self._statement(request.path_params["id"])
            if statement.state in {"PENDING", "RUNNING"}:
                statement.polls_left -= 1
                statement.state = "RUNNING" if statement.polls_left > 0 else statement.final
            return JSONResponse(self._response(statement))
        return await self._guard(request, action)

    async def _chunk(self, request: Request) -> Response:
        async def action(request: Request) -> Response:
            statement = self._statement(request.path_params["id"])
            if statement.state != "SUCCEEDED":
                raise ApiError(400, "INVALID_PARAMETER_VALUE", f"statement is {statement.state}")
            return JSONResponse(self._chunk_body(statement, request.path_params["n"]))
        return await self._guard(request, action)

    async def _cancel(self, request: Request) -> Response:
        async def action(request: Request) -> Response:
            statement = self._statement(request.path_params["id"])
            if statement.state in {"PENDING", "RUNNING"}:
                statement.state = "CANCELED"
            return JSONResponse({})
        return await self._guard(request, action)

    def _statement(self, statement_id: str) -> Statement:
        if statement_id not in self.statements:
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"Statement {statement_id} does not exist")
        return self.statements[statement_id]

    async def _file(self, request: Request) -> Response:
        async def action(request: Request) -> Response:
            path = "/" + request.path_params["path"]
            parts = path.strip("/").split("/")
            if len(parts) < 5 or parts[0] != "Volumes" or tuple(parts[1:4]) not in self.volumes:
                raise ApiError(404, "NOT_FOUND", f"The volume for {path} does not exist")
            if request.method == "PUT":
                overwrite = request.query_params.get("overwrite", "false").lower() == "true"
                if path in self.files and not overwrite:
                    raise ApiError(409, "ALREADY_EXISTS", f"The file {path} already exists")
                self.files[path] = await request.body()
                return Response(status_code=204)
            if path not in self.files:
                raise ApiError(404, "NOT_FOUND", f"The file {path} does not exist")
            data = self.files[path]
            if request.method == "HEAD":
                return Response(headers={"content-length": str(len(data))})
            return Response(data, media_type="application/octet-stream")
        return await self._guard(request, action)


def _merge_parts(merge: str) -> tuple[str, str, str, str, str] | None:
    """A translated MERGE's target, its alias, the USING query, its alias and the ON condition."""
    head = re.match(r"\s*MERGE\s+INTO\s+(\S+)\s+(?:AS\s+)?(\w+)\s+USING\s*\(", merge, flags=re.I)
    if not head:
        return None
    close = _closing_parenthesis(merge, head.end() - 1)
    tail = re.match(r"\s*(?:AS\s+)?(\w+)\s+ON\s+(.*?)\s+WHEN\s", merge[close + 1:], flags=re.I | re.S)
    if not tail:
        return None
    return head.group(1), head.group(2), merge[head.end():close], tail.group(1), tail.group(2)


def _column(name: str, duck_type: str, position: int) -> dict[str, Any]:
    """A manifest column as Databricks describes it, from a DuckDB result (or SQL) type."""
    if duck_type.endswith("[]"):
        element = _column(name, duck_type[:-2], position)["type_text"]
        return {"name": name, "type_name": "ARRAY", "type_text": f"ARRAY<{element}>", "position": position}
    if match := DECIMAL.fullmatch(duck_type):
        precision, scale = int(match.group(1)), int(match.group(2))
        return {"name": name, "type_name": "DECIMAL", "type_text": f"DECIMAL({precision},{scale})",
                "type_precision": precision, "type_scale": scale, "position": position}
    type_name, type_text = TYPE_NAMES.get(duck_type, ("STRING", "STRING"))
    column = {"name": name, "type_name": type_name, "type_text": type_text, "position": position}
    if type_name == "DECIMAL":
        column.update(type_precision=38, type_scale=0)
    return column


def _closing_parenthesis(sql: str, opening: int) -> int:
    """The index of the parenthesis that closes the one at `opening`, past quoted text."""
    depth, index, quote = 0, opening, ""
    while index < len(sql):
        char = sql[index]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise ApiError(200, "PARSE_SYNTAX_ERROR", "[PARSE_SYNTAX_ERROR] Syntax error: unbalanced parentheses")
