"""A local stand-in for the Databricks SQL Statement Execution API and the Files API, as documented.

- `POST /api/2.0/sql/statements` (statement, warehouse_id, parameters, disposition, format,
  wait_timeout, on_wait_timeout): INLINE supports only JSON_ARRAY; `wait_timeout` is `0s` or
  `5s`..`50s`. A statement answers PENDING/RUNNING for `pending_polls` polls, then SUCCEEDED with
  `manifest` (schema columns with `type_name`, `total_chunk_count`, `chunks`) and the first chunk in
  `result` (`data_array` of text values, `next_chunk_index`); SQL errors end in FAILED with
  `status.error`. `GET /api/2.0/sql/statements/{id}`, `GET .../result/chunks/{n}` and
  `POST .../cancel` as documented. MERGE answers num_affected/updated/deleted/inserted_rows.
- `PUT /api/2.0/fs/files{path}?overwrite=` uploads a file into a registered volume
  (`/Volumes/catalog/schema/volume/...`); `GET` downloads it.
- `GET /.well-known/databricks-config` (host metadata the SDK probes) names a workspace id.
- Errors as `{"error_code", "message"}`: 401 UNAUTHENTICATED, 404 RESOURCE_DOES_NOT_EXIST,
  400 INVALID_PARAMETER_VALUE, 409 ALREADY_EXISTS, and queued faults (e.g. 429 with Retry-After).

SQL runs in DuckDB: Databricks' backtick identifiers and `:name` parameter markers are translated
(`:name` becomes a typed `CAST($name AS ...)` using the parameter's `type`).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import duckdb
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.standins.background import BackgroundServer

DUCK_TYPES = {"STRING": "VARCHAR", "BIGINT": "BIGINT", "LONG": "BIGINT", "INT": "INTEGER",
              "INTEGER": "INTEGER", "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN",
              "DATE": "DATE", "TIMESTAMP": "TIMESTAMP"}
TYPE_NAMES = {"VARCHAR": "STRING", "BIGINT": "LONG", "INTEGER": "INT", "DOUBLE": "DOUBLE", "FLOAT": "FLOAT",
              "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP": "TIMESTAMP", "SMALLINT": "SHORT",
              "TINYINT": "BYTE", "HUGEINT": "DECIMAL"}


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
            out.append(f"CAST(${name} AS {DUCK_TYPES.get(types[name], 'VARCHAR')})")
            index += len(match.group(0))
            continue
        else:
            out.append(char)
        index += 1
    return "".join(out)


def _value(text: str | None, kind: str) -> Any:
    if text is None:
        return None
    if kind in {"BIGINT", "LONG", "INT", "INTEGER"}:
        return int(text)
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
    return str(value)


class DatabricksStandin(BackgroundServer):
    def __init__(self, token: str = "dapi-standin", warehouse_id: str = "wh-standin",
                 chunk_rows: int = 1000, pending_polls: int = 0) -> None:
        self.token = token
        self.warehouse_id = warehouse_id
        self.chunk_rows = chunk_rows
        self.pending_polls = pending_polls
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
                  times: int = 1) -> None:
        for _ in range(times):
            self.faults.append((status, code, message, headers or {}))

    # -------------------------------------------------------------- plumbing
    async def _guard(self, request: Request, action: Any) -> Response:
        self.requests.append({"method": request.method, "path": request.url.path})
        try:
            if request.headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")
            if self.faults:
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
            body["manifest"] = {
                "format": "JSON_ARRAY",
                "schema": {"column_count": len(statement.columns), "columns": statement.columns},
                "total_chunk_count": len(chunks),
                "chunks": [{"chunk_index": i, "row_offset": start, "row_count": len(rows)}
                           for i, (start, rows) in enumerate(chunks)],
                "total_row_count": len(statement.rows),
                "truncated": False,
            }
            body["result"] = self._chunk_body(statement, 0)
        return body

    def _chunks(self, statement: Statement) -> list[tuple[int, list[list[Any]]]]:
        size = max(1, self.chunk_rows)
        starts = range(0, len(statement.rows), size)
        return [(start, statement.rows[start:start + size]) for start in starts] or [(0, [])]

    def _chunk_body(self, statement: Statement, index: int) -> dict[str, Any]:
        chunks = self._chunks(statement)
        if not 0 <= index < len(chunks):
            raise ApiError(400, "INVALID_PARAMETER_VALUE", f"chunk_index {index} is out of range")
        start, rows = chunks[index]
        body: dict[str, Any] = {"chunk_index": index, "row_offset": start, "row_count": len(rows),
                                "data_array": rows}
        if index + 1 < len(chunks):
            body["next_chunk_index"] = index + 1
            body["next_chunk_internal_link"] = (f"/api/2.0/sql/statements/{statement.id}"
                                                f"/result/chunks/{index + 1}")
        return body

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
            if disposition == "INLINE" and fmt != "JSON_ARRAY":
                raise ApiError(400, "INVALID_PARAMETER_VALUE", "INLINE disposition supports only JSON_ARRAY")
            wait = body.get("wait_timeout", "10s")
            match = re.fullmatch(r"(\d+)s", str(wait))
            if not match or not (int(match.group(1)) == 0 or 5 <= int(match.group(1)) <= 50):
                raise ApiError(400, "INVALID_PARAMETER_VALUE",
                               "wait_timeout must be 0s or between 5s and 50s")
            statement = Statement(uuid.uuid4().hex, self.pending_polls)
            self._run(statement, body["statement"], body.get("parameters") or [])
            if statement.polls_left > 0:
                statement.final, statement.state = statement.state, "PENDING"
            self.statements[statement.id] = statement
            return JSONResponse(self._response(statement))
        return await self._guard(request, action)

    def _run(self, statement: Statement, sql: str, parameters: list[dict[str, Any]]) -> None:
        types = {p["name"]: p.get("type", "STRING").upper() for p in parameters}
        values = {p["name"]: _value(p.get("value"), types[p["name"]]) for p in parameters}
        try:
            translated = translate(sql, types)
            used = {name: values[name] for name in values if f"${name} " in translated + " "
                    or f"${name})" in translated}
            with self._lock:
                if re.match(r"\s*MERGE\b", sql, flags=re.I):
                    target = re.match(r'\s*MERGE\s+INTO\s+([^\s]+)', translated, flags=re.I).group(1)
                    before = self.db.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                    affected = self.db.execute(translated, used).fetchone()[0]
                    after = self.db.execute(f"SELECT count(*) FROM {target}").fetchone()[0]
                    inserted = after - before
                    statement.columns = [_column(n, "LONG", i) for i, n in enumerate(
                        ["num_affected_rows", "num_updated_rows", "num_deleted_rows", "num_inserted_rows"])]
                    statement.rows = [[str(affected), str(affected - inserted), "0", str(inserted)]]
                else:
                    cursor = self.db.execute(translated, used)
                    description = cursor.description or []
                    rows = cursor.fetchall() if description else []
                    statement.columns = [_column(d[0], TYPE_NAMES.get(str(d[1]).split("(")[0], "STRING"), i)
                                         for i, d in enumerate(description)]
                    statement.rows = [[_text(v) for v in row] for row in rows]
            statement.state = "SUCCEEDED"
        except (duckdb.Error, ApiError) as exc:
            message = exc.message if isinstance(exc, ApiError) else str(exc).splitlines()[0]
            statement.state = "FAILED"
            statement.error = {"error_code": "BAD_REQUEST", "message": message}

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


def _column(name: str, type_name: str, position: int) -> dict[str, Any]:
    return {"name": name, "type_name": type_name, "type_text": type_name, "position": position}
