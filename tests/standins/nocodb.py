"""A local stand-in for the NocoDB v2 REST API (records, table list and table meta), as documented.

- `GET /api/v2/tables/{tableId}/records` with `offset`, `limit` (capped at `max_limit`, default
  1000; the applied size is reported as `pageInfo.pageSize`), `where` (`(field,eq,value)`,
  `(field,neq,value)`, joined with `~and` / `~or`), `viewId` and `fields`; answers
  `{"list": [...], "pageInfo": {"totalRows", "page", "pageSize", "isFirstPage", "isLastPage"}}`.
- `POST` (create) and `PATCH` (update by primary key `Id`) with one object or an array; answer
  `[{"Id": ...}]`. Keys are matched to columns by title, column name or id; a key that is no
  column, or a computed column (Formula, Lookup, ...), is dropped without an error, as NocoDB's
  mapAliasToColumn does. A missing row is 404 ERR_RECORD_NOT_FOUND, a non-number in a Number
  field 422 ERR_INVALID_VALUE_FOR_FIELD. Every row is checked before any is written (one transaction).
- `GET /api/v2/meta/bases/{baseId}/tables` lists tables (`id`, `title`, `table_name`);
  `GET /api/v2/meta/tables/{tableId}` gives one table with its `columns` (`id`, `title`,
  `column_name`, `uidt`, `pk`, `ai`, `system`); `meta_forbidden=True` answers it 403, as for a
  token whose role may not read the schema.
- Every row carries the system fields NocoDB adds to a table it creates, `CreatedAt` and
  `UpdatedAt` (`CreatedTime` and `LastModifiedTime` columns, `system: true`); a write sets
  `UpdatedAt`.
- The token goes in the `xc-token` header; otherwise 401 `{"msg": "Authentication required - Invalid token"}`.
- `fail_next(status, body, headers, method=None)` queues faults (e.g. 429 with Retry-After) for the
  next requests (of that method); `delay_next(seconds, method, times, after)` does the next such
  requests (after `after` answered on time), then answers late (an answer lost to a client timeout).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.standins.background import BackgroundServer

_ids = itertools.count(1)
# Column types NocoDB computes (nocodb-sdk isVirtualCol): values sent for them are skipped.
COMPUTED = {"LinkToAnotherRecord", "Links", "Formula", "Rollup", "Lookup", "QrCode", "Barcode", "Button",
            "CreatedTime", "LastModifiedTime", "CreatedBy", "LastModifiedBy"}


class NocoError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, code: str, message: str) -> NocoError:
    return NocoError(status, {"error": code, "message": message})


@dataclass
class NocoTable:
    id: str
    title: str
    # title -> SingleLineText | LongText | Number | Checkbox | MultiSelect (text: "a,b") | Formula ...
    columns: dict[str, str]
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)  # view id -> where clause
    next_id: int = 1

    def column_meta(self) -> list[dict[str, Any]]:
        """`columns[]` as the table meta gives them; column_name is the database name."""
        columns = [{"id": f"c{self.id}pk", "title": "Id", "column_name": "id", "uidt": "ID", "pk": True,
                    "ai": True, "system": False}]
        columns += [{"id": f"c{self.id}{i}", "title": title, "column_name": title.lower().replace(" ", "_"),
                     "uidt": kind, "pk": False, "ai": False, "system": False}
                    for i, (title, kind) in enumerate(self.columns.items())]
        columns += [{"id": f"c{self.id}{title}", "title": title, "column_name": name, "uidt": kind,
                     "pk": False, "ai": False, "system": True} for title, name, kind in SYSTEM_COLUMNS]
        return columns

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        """The values NocoDB would store: matched by title, column name or id; others dropped."""
        out = {}
        for column in self.column_meta()[1:]:
            value = next((values[column[k]] for k in ("title", "column_name", "id") if column[k] in values),
                         _UNSET)
            if value is _UNSET or column["uidt"] in COMPUTED:
                continue
            title = column["title"]
            if column["uidt"] == "Number" and value is not None and (isinstance(value, bool)
                                                                     or not isinstance(value, int | float)):
                raise _error(422, "ERR_INVALID_VALUE_FOR_FIELD", f"Invalid value for field '{title}'")
            out[title] = value
        return out

    def insert(self, values: dict[str, Any]) -> int:
        row_id = self.next_id
        self.next_id += 1
        now = _now()
        self.rows[row_id] = {"Id": row_id, **{c: None for c in self.columns}, **self.check(values),
                             "CreatedAt": now, "UpdatedAt": now}
        return row_id


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S+00:00")  # as the v2 API gives a timestamp


_UNSET = object()
SYSTEM_COLUMNS = [("CreatedAt", "created_at", "CreatedTime"), ("UpdatedAt", "updated_at", "LastModifiedTime")]


def _where(clause: str) -> Any:
    parts = re.split(r"~(and|or)", clause)
    conditions, joins = parts[0::2], parts[1::2]
    predicates = []
    for condition in conditions:
        match = re.fullmatch(r"\s*\(([^,]+),(eq|neq|like),(.*)\)\s*", condition)
        if not match:
            raise _error(400, "ERR_INVALID_FILTER", f"Invalid where clause: {clause}")
        name, op, value = match.groups()

        def test(row: dict[str, Any], name: str = name, op: str = op, value: str = value) -> bool:
            cell = "" if row.get(name) is None else str(row.get(name))
            if op == "eq":
                return cell == value
            if op == "neq":
                return cell != value
            return value.strip("%").lower() in cell.lower()

        predicates.append(test)

    def combined(row: dict[str, Any]) -> bool:
        result = predicates[0](row)
        for join, predicate in zip(joins, predicates[1:], strict=True):
            result = (result and predicate(row)) if join == "and" else (result or predicate(row))
        return result

    return combined


class NocoDBStandin(BackgroundServer):
    def __init__(self, token: str = "nc-standin", max_limit: int = 1000, max_bulk: int | None = None,
                 meta_forbidden: bool = False) -> None:
        self.token = token
        self.max_limit = max_limit
        self.max_bulk = max_bulk
        self.meta_forbidden = meta_forbidden
        self.bases: dict[str, list[NocoTable]] = {}
        self.log: list[dict[str, Any]] = []
        self.faults: deque[tuple[int, Any, dict[str, str], str | None]] = deque()  # ..., method or any
        self.delays: deque[tuple[float, str]] = deque()  # (seconds, method): done, then answered late
        self._lock = threading.Lock()
        routes = [
            Route("/api/v2/tables/{table}/records", self._records, methods=["GET", "POST", "PATCH"]),
            Route("/api/v2/meta/bases/{base}/tables", self._tables, methods=["GET"]),
            Route("/api/v2/meta/tables/{table}", self._table_meta, methods=["GET"]),
        ]
        super().__init__(Starlette(routes=routes))

    def add_table(self, base: str, title: str, columns: dict[str, str],
                  rows: list[dict[str, Any]] = ()) -> NocoTable:
        table = NocoTable(f"m{next(_ids):014d}", title, dict(columns))
        for values in rows:
            table.insert(values)
        self.bases.setdefault(base, []).append(table)
        return table

    def fail_next(self, status: int, body: Any, headers: dict[str, str] | None = None,
                  times: int = 1, method: str | None = None) -> None:
        for _ in range(times):
            self.faults.append((status, body, headers or {}, method and method.upper()))

    def delay_next(self, seconds: float, method: str, times: int = 1, after: int = 0) -> None:
        self.delays.extend([(0.0, method.upper())] * after + [(seconds, method.upper())] * times)

    def _table(self, table_id: str) -> NocoTable:
        for tables in self.bases.values():
            for table in tables:
                if table.id == table_id:
                    return table
        raise _error(404, "ERR_TABLE_NOT_FOUND", f"Table '{table_id}' not found")

    def _check(self, request: Request) -> None:
        if request.headers.get("xc-token") != self.token:
            raise NocoError(401, {"msg": "Authentication required - Invalid token"})
        if self.faults and self.faults[0][3] in (None, request.method):
            status, body, headers, _ = self.faults.popleft()
            raise NocoError(status, body, headers)

    async def _answer(self, request: Request, action: Any) -> JSONResponse:
        entry: dict[str, Any] = {"method": request.method, "path": request.url.path,
                                 "query": dict(request.query_params), "rows": 0, "status": None}
        self.log.append(entry)  # logged on arrival: a late answer is still a request that was made
        try:
            body = await request.json() if request.method in {"POST", "PATCH"} else None
            entry["rows"] = len(body) if isinstance(body, list) else (1 if body else 0)
            with self._lock:
                self._check(request)
                payload = action(request, body)
                delay = self.delays.popleft()[0] if self.delays and self.delays[0][1] == request.method \
                    else 0.0
            entry["status"] = 200
            if delay:
                await asyncio.sleep(delay)
            return JSONResponse(payload)
        except NocoError as exc:
            entry["status"] = exc.status
            return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    async def _tables(self, request: Request) -> JSONResponse:
        def action(request: Request, body: Any) -> Any:
            base = request.path_params["base"]
            if base not in self.bases:
                raise _error(404, "ERR_BASE_NOT_FOUND", f"Base '{base}' not found")
            tables = [{"id": t.id, "title": t.title, "table_name": f"nc_{t.title.lower()}"}
                      for t in self.bases[base]]
            return {"list": tables, "pageInfo": {"totalRows": len(tables), "page": 1,
                                                  "pageSize": len(tables), "isFirstPage": True,
                                                  "isLastPage": True}}
        return await self._answer(request, action)

    async def _table_meta(self, request: Request) -> JSONResponse:
        def action(request: Request, body: Any) -> Any:
            if self.meta_forbidden:
                raise _error(403, "ERR_FORBIDDEN", "Forbidden - Unauthorized access")
            table = self._table(request.path_params["table"])
            base = next(b for b, tables in self.bases.items() if table in tables)
            return {"id": table.id, "base_id": base, "title": table.title,
                    "table_name": f"nc_{table.title.lower()}", "type": "table", "enabled": True,
                    "columns": table.column_meta(), "views": []}
        return await self._answer(request, action)

    async def _records(self, request: Request) -> JSONResponse:
        def action(request: Request, body: Any) -> Any:
            table = self._table(request.path_params["table"])
            if request.method == "GET":
                return self._list(table, request.query_params)
            items = body if isinstance(body, list) else [body]
            if not items or not all(isinstance(i, dict) for i in items):
                raise _error(400, "ERR_INVALID_BODY", "Body must be an object or an array of objects")
            if self.max_bulk is not None and len(items) > self.max_bulk:
                raise _error(400, "ERR_BULK_LIMIT", f"At most {self.max_bulk} records per request")
            if request.method == "POST":
                checked = [table.check(i) for i in items]  # all or nothing
                return [{"Id": table.insert(values)} for values in checked]
            plan = []
            for item in items:
                row_id = item.get("Id")
                if row_id not in table.rows:
                    raise _error(404, "ERR_RECORD_NOT_FOUND", f"Record '{row_id}' not found")
                plan.append((row_id, table.check(item)))
            for row_id, values in plan:
                table.rows[row_id].update(values, UpdatedAt=_now())
            return [{"Id": row_id} for row_id, _ in plan]
        return await self._answer(request, action)

    def _list(self, table: NocoTable, query: Any) -> dict[str, Any]:
        try:
            offset = int(query.get("offset", 0))
            limit = int(query.get("limit", 25))
        except ValueError:
            raise _error(400, "ERR_INVALID_PAGINATION", "offset and limit must be integers") from None
        limit = max(1, min(limit, self.max_limit))
        rows = list(table.rows.values())
        if view := query.get("viewId"):
            if view not in table.views:
                raise _error(404, "ERR_VIEW_NOT_FOUND", f"View '{view}' not found")
            rows = [r for r in rows if _where(table.views[view])(r)] if table.views[view] else rows
        if where := query.get("where"):
            rows = [r for r in rows if _where(where)(r)]
        page = rows[offset:offset + limit]
        if fields := query.get("fields"):
            wanted = [f.strip() for f in fields.split(",")]
            page = [{k: v for k, v in r.items() if k in wanted} for r in page]
        return {"list": [dict(r) for r in page],
                "pageInfo": {"totalRows": len(rows), "page": offset // limit + 1, "pageSize": limit,
                             "isFirstPage": offset == 0, "isLastPage": offset + limit >= len(rows)}}
