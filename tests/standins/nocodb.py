"""A local stand-in for the NocoDB v2 REST API (records and the table list), as documented.

- `GET /api/v2/tables/{tableId}/records` with `offset`, `limit` (capped at `max_limit`, default
  1000; the applied size is reported as `pageInfo.pageSize`), `where` (`(field,eq,value)`,
  `(field,neq,value)`, joined with `~and` / `~or`), `viewId` and `fields`; answers
  `{"list": [...], "pageInfo": {"totalRows", "page", "pageSize", "isFirstPage", "isLastPage"}}`.
- `POST` (create) and `PATCH` (update by primary key `Id`) with one object or an array; answer
  `[{"Id": ...}]`. Unknown fields are 400 ERR_FIELD_NOT_FOUND, a missing row 404
  ERR_RECORD_NOT_FOUND, a non-number in a Number field 400 ERR_INVALID_VALUE_FOR_FIELD.
- `GET /api/v2/meta/bases/{baseId}/tables` lists tables (`id`, `title`, `table_name`).
- The token goes in the `xc-token` header; otherwise 401 `{"msg": "Authentication required - Invalid token"}`.
- `fail_next(status, body, headers)` queues faults (e.g. 429 with Retry-After).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.standins.background import BackgroundServer

_ids = itertools.count(1)


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
    columns: dict[str, str]  # name -> SingleLineText | LongText | Number | Checkbox
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)  # view id -> where clause
    next_id: int = 1

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for name, value in values.items():
            if name == "Id":
                continue
            kind = self.columns.get(name)
            if kind is None:
                raise _error(400, "ERR_FIELD_NOT_FOUND", f"Field '{name}' not found")
            if kind == "Number" and value is not None and (isinstance(value, bool)
                                                           or not isinstance(value, int | float)):
                raise _error(400, "ERR_INVALID_VALUE_FOR_FIELD", f"Invalid value for field '{name}'")
            out[name] = value
        return out

    def insert(self, values: dict[str, Any]) -> int:
        row_id = self.next_id
        self.next_id += 1
        self.rows[row_id] = {"Id": row_id, **{c: None for c in self.columns}, **self.check(values)}
        return row_id


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
    def __init__(self, token: str = "nc-standin", max_limit: int = 1000, max_bulk: int | None = None) -> None:
        self.token = token
        self.max_limit = max_limit
        self.max_bulk = max_bulk
        self.bases: dict[str, list[NocoTable]] = {}
        self.log: list[dict[str, Any]] = []
        self.faults: deque[tuple[int, Any, dict[str, str]]] = deque()
        self._lock = threading.Lock()
        routes = [
            Route("/api/v2/tables/{table}/records", self._records, methods=["GET", "POST", "PATCH"]),
            Route("/api/v2/meta/bases/{base}/tables", self._tables, methods=["GET"]),
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
                  times: int = 1) -> None:
        for _ in range(times):
            self.faults.append((status, body, headers or {}))

    def _table(self, table_id: str) -> NocoTable:
        for tables in self.bases.values():
            for table in tables:
                if table.id == table_id:
                    return table
        raise _error(404, "ERR_TABLE_NOT_FOUND", f"Table '{table_id}' not found")

    def _check(self, request: Request) -> None:
        if request.headers.get("xc-token") != self.token:
            raise NocoError(401, {"msg": "Authentication required - Invalid token"})
        if self.faults:
            status, body, headers = self.faults.popleft()
            raise NocoError(status, body, headers)

    async def _answer(self, request: Request, action: Any) -> JSONResponse:
        entry: dict[str, Any] = {"method": request.method, "path": request.url.path,
                                 "query": dict(request.query_params)}
        try:
            body = await request.json() if request.method in {"POST", "PATCH"} else None
            entry["rows"] = len(body) if isinstance(body, list) else (1 if body else 0)
            with self._lock:
                self._check(request)
                payload = action(request, body)
            entry["status"] = 200
            return JSONResponse(payload)
        except NocoError as exc:
            entry["status"] = exc.status
            return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
        finally:
            self.log.append(entry)

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
                table.rows[row_id].update(values)
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
