"""A local stand-in for the Airtable Web API (v0), as documented.

- `GET /v0/{baseId}/{tableIdOrName}`: `pageSize` (max 100), `offset`, `maxRecords`, `view`,
  `filterByFormula`, `fields[]`; answers `{"records": [...], "offset": "..."}` while more remain.
  `POST /v0/{baseId}/{table}/listRecords` takes the same options in the body.
- `POST` (create), `PATCH` (update) and `PUT` (replace) with `{"records": [...], "typecast": bool}`,
  at most 10 records (more: 422 INVALID_RECORDS); `performUpsert.fieldsToMergeOn` matches records
  without an id and answers `createdRecords` / `updatedRecords`.
- `GET /v0/meta/bases/{baseId}/tables`: the base's schema (`tables[].fields[]` with `name` and
  `type`), or 403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND for a token without `schema.bases:read`
  (`schema_readable = False`). A `multipleSelects` field takes an array of option names (unknown
  ones added under `typecast`); text given to it is one option (whether Airtable splits text on
  commas is not documented).
- Errors as Airtable sends them: 401 AUTHENTICATION_REQUIRED, 403
  INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND, 404 NOT_FOUND, 422 UNKNOWN_FIELD_NAME /
  INVALID_VALUE_FOR_COLUMN / INVALID_MULTIPLE_CHOICE_OPTIONS / ROW_DOES_NOT_EXIST /
  VIEW_NAME_NOT_FOUND / INVALID_FILTER_BY_FORMULA, and 429 once a base gets more than 5 requests
  in a second (with `Retry-After`).
- Empty cell values are left out of `fields`, as Airtable does. Fields of the types Airtable fills
  in itself (`autoNumber`, `createdTime`, `lastModifiedTime`, which a write changes) are in every
  record; a value sent for one is 422 INVALID_VALUE_FOR_COLUMN.
- `fail_next(status, error)` answers the next requests with an error before doing anything;
  `delay_next(seconds, method, times, after)` does the next such requests (after `after` answered
  on time), then answers late (an answer lost to a client timeout: the change was applied all the same).

Formulas understood: `{F}='v'`, `{F}!='v'`, `{F}=3`, `{F}` (non-empty), `NOT(...)`, `AND(...)`,
`OR(...)`; anything else is answered 422 like an invalid formula.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.standins.background import BackgroundServer

MAX_RECORDS_PER_REQUEST = 10
MAX_PAGE_SIZE = 100
REQUESTS_PER_SECOND = 5
_ids = itertools.count(1)
NOT_PERMITTED = {"type": "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND",
                 "message": "Invalid permissions, or the requested model was not found. Check that both your "
                            "user and your token have the required permissions, and that the model names "
                            "and/or ids are correct."}


# Field types Airtable fills in itself: every record has them, and a value sent for one is refused.
COMPUTED = {"autoNumber", "createdTime", "lastModifiedTime"}


def _now() -> str:
    """A time as Airtable gives one, later with every call (a write in the same millisecond too)."""
    return (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=next(_ticks))).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


_ticks = itertools.count()


def new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):014d}"


class AirtableError(Exception):
    def __init__(self, status: int, error: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, error)
        self.status, self.error, self.headers = status, error, headers or {}


def _unprocessable(kind: str, message: str) -> AirtableError:
    return AirtableError(422, {"type": kind, "message": message})


@dataclass
class FakeTable:
    id: str
    name: str
    # name -> singleLineText | multilineText | number | singleSelect | multipleSelects | checkbox,
    # or a type Airtable computes (COMPUTED)
    fields: dict[str, str]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    views: dict[str, str | None] = field(default_factory=dict)  # view name -> formula (None = all)
    select_options: dict[str, set[str]] = field(default_factory=dict)

    def visible(self, fields: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in fields.items() if v not in (None, "", False, [])}

    def insert(self, fields: dict[str, Any]) -> str:
        record_id = new_id("rec")
        self.records[record_id] = {"id": record_id, "createdTime": "2026-01-01T00:00:00.000Z",
                                   "fields": fields, "number": len(self.records) + 1, "modified": _now()}
        return record_id

    def as_json(self, record: dict[str, Any], only: list[str] | None = None) -> dict[str, Any]:
        computed = {"autoNumber": record["number"], "createdTime": record["createdTime"],
                    "lastModifiedTime": record["modified"]}
        fields = self.visible(record["fields"]) | {name: computed[kind] for name, kind in self.fields.items()
                                                   if kind in computed}
        if only:
            fields = {k: v for k, v in fields.items() if k in only}
        return {"id": record["id"], "createdTime": record["createdTime"], "fields": fields}

    def cast(self, name: str, value: Any, typecast: bool) -> Any:
        kind = self.fields.get(name)
        if kind is None:
            raise _unprocessable("UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
        if kind in COMPUTED:
            raise _unprocessable("INVALID_VALUE_FOR_COLUMN",
                                 f'Field "{name}" cannot accept a value because the field is computed')
        if value is None:
            return None
        bad = _unprocessable("INVALID_VALUE_FOR_COLUMN",
                             f'Field "{name}" cannot accept the provided value')
        if kind == "number":
            if isinstance(value, bool):
                raise bad
            if isinstance(value, int | float):
                return value
            if typecast and isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    raise bad from None
                return int(number) if number.is_integer() else number
            raise bad
        if kind == "checkbox":
            if isinstance(value, bool):
                return value
            if typecast:
                return str(value).lower() in {"true", "1", "yes", "checked"}
            raise bad
        if kind == "singleSelect":
            text = value if isinstance(value, str) else (str(value) if typecast else None)
            if text is None:
                raise bad
            return self.choose(name, text, typecast)
        if kind == "multipleSelects":
            names = [value] if isinstance(value, str) and typecast else value
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise bad
            for option in names:
                self.choose(name, option, typecast)
            return names
        if isinstance(value, str):
            return value
        if typecast:
            return value if isinstance(value, str) else json.dumps(value) if isinstance(value, list | dict) \
                else str(value)
        raise bad

    def choose(self, name: str, option: str, typecast: bool) -> str:
        """A select field's option by name; a new one is added under typecast, else refused."""
        options = self.select_options.setdefault(name, set())
        if option and option not in options:
            if not typecast:
                raise _unprocessable("INVALID_MULTIPLE_CHOICE_OPTIONS",
                                     f'Insufficient permissions to create new select option ""{option}""')
            options.add(option)
        return option

    def cast_all(self, fields: Any, typecast: bool) -> dict[str, Any]:
        if not isinstance(fields, dict):
            raise _unprocessable("INVALID_REQUEST_UNKNOWN", "Invalid request: fields must be an object")
        return {name: self.cast(name, value, typecast) for name, value in fields.items()}


def _parse_formula(text: str) -> Any:
    """A predicate for the small formula subset the stand-in understands."""
    text = text.strip()
    match = re.fullmatch(r"(NOT|AND|OR)\((.*)\)", text, flags=re.S | re.I)
    if match:
        op, inner = match.group(1).upper(), match.group(2)
        parts = _split_args(inner)
        preds = [_parse_formula(p) for p in parts]
        if op == "NOT":
            if len(preds) != 1:
                raise ValueError(text)
            return lambda f: not preds[0](f)
        if op == "AND":
            return lambda f: all(p(f) for p in preds)
        return lambda f: any(p(f) for p in preds)
    match = re.fullmatch(r"\{([^}]+)\}\s*(!=|=)\s*(?:'([^']*)'|\"([^\"]*)\"|(-?\d+(?:\.\d+)?))", text)
    if match:
        name, op = match.group(1), match.group(2)
        literal: Any = match.group(3) if match.group(3) is not None else match.group(4)
        if literal is None:
            literal = float(match.group(5))

        def compare(fields: dict[str, Any]) -> bool:
            value = fields.get(name)
            value = "" if value is None else value
            numeric = isinstance(literal, float) and isinstance(value, int | float)
            equal = float(value) == literal if numeric else str(value) == str(literal)
            return equal if op == "=" else not equal

        return compare
    match = re.fullmatch(r"\{([^}]+)\}", text)
    if match:
        name = match.group(1)
        return lambda f: f.get(name) not in (None, "", False, [], 0)
    raise ValueError(text)


def _split_args(inner: str) -> list[str]:
    parts, depth, current, quote = [], 0, [], ""
    for char in inner:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


class AirtableStandin(BackgroundServer):
    def __init__(self, token: str = "pat-standin", retry_after: float = 1.0,
                 requests_per_second: int = REQUESTS_PER_SECOND) -> None:
        self.token = token
        self.retry_after = retry_after
        self.requests_per_second = requests_per_second
        self.bases: dict[str, dict[str, FakeTable]] = {}
        self.log: list[dict[str, Any]] = []  # method, path, records in the body, status
        self.rate_limited = 0
        self.schema_readable = True  # False: a token without the schema.bases:read scope
        # Answered before anything else; None lets one request through first.
        self.faults: deque[tuple[int, Any, dict[str, str]] | None] = deque()
        self.delays: deque[tuple[float, str]] = deque()  # (seconds, method): applied, then answered late
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        routes = [
            Route("/v0/meta/bases/{base}/tables", self._schema, methods=["GET"]),
            Route("/v0/{base}/{table}/listRecords", self._list_post, methods=["POST"]),
            Route("/v0/{base}/{table}", self._records, methods=["GET", "POST", "PATCH", "PUT"]),
        ]
        super().__init__(Starlette(routes=routes))

    # -------------------------------------------------------------- test helpers
    def add_table(self, base: str, name: str, fields: dict[str, str],
                  records: list[dict[str, Any]] = ()) -> FakeTable:
        table = FakeTable(new_id("tbl"), name, dict(fields))
        for values in records:
            table.insert(table.cast_all(values, typecast=True))
        self.bases.setdefault(base, {})[table.id] = table
        return table

    def table(self, base: str, name: str) -> FakeTable:
        return self._table(base, name)

    def fail_next(self, status: int, error: Any, headers: dict[str, str] | None = None,
                  times: int = 1, after: int = 0) -> None:
        """Answer the next TIMES requests with STATUS, once AFTER requests have been served."""
        self.faults.extend([None] * after + [(status, error, headers or {})] * times)

    def delay_next(self, seconds: float, method: str, times: int = 1, after: int = 0) -> None:
        self.delays.extend([(0.0, method.upper())] * after + [(seconds, method.upper())] * times)

    def max_requests_in_any_second(self, base: str) -> int:
        times = sorted(e["time"] for e in self.log if e["base"] == base and e["status"] != 429)
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    # -------------------------------------------------------------- plumbing
    def _table(self, base: str, name: str) -> FakeTable:
        if base not in self.bases:
            raise AirtableError(404, "NOT_FOUND")
        for table in self.bases[base].values():
            if name in (table.id, table.name):
                return table
        raise AirtableError(403, NOT_PERMITTED)

    def _check(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        if header != f"Bearer {self.token}":
            raise AirtableError(401, {"type": "AUTHENTICATION_REQUIRED",
                                      "message": "Authentication required"})
        base = request.path_params["base"]
        with self._lock:
            if self.faults and (fault := self.faults.popleft()) is not None:
                raise AirtableError(*fault)
            now = time.monotonic()
            recent = self._recent.setdefault(base, deque())
            while recent and now - recent[0] >= 1.0:
                recent.popleft()
            if len(recent) >= self.requests_per_second:
                self.rate_limited += 1
                raise AirtableError(429, None, {"Retry-After": f"{self.retry_after:g}"})
            recent.append(now)

    async def _handle(self, request: Request, action: Any) -> JSONResponse:
        entry = {"method": request.method, "base": request.path_params["base"],
                 "path": request.url.path, "time": time.monotonic(), "records": 0, "status": None}
        self.log.append(entry)  # logged on arrival: a late answer is still a request that was made
        try:
            body = await request.json() if request.method in {"POST", "PATCH", "PUT"} else {}
            if isinstance(body, dict) and isinstance(body.get("records"), list):
                entry["records"] = len(body["records"])
            self._check(request)
            table = self._table(request.path_params["base"], request.path_params["table"])
            with self._lock:
                payload = action(request, table, body)
                delay = self.delays.popleft()[0] if self.delays and self.delays[0][1] == request.method \
                    else 0.0
            entry["status"] = 200
            if delay:
                await asyncio.sleep(delay)
            return JSONResponse(payload)
        except AirtableError as exc:
            entry["status"] = exc.status
            if exc.status == 429:
                content: Any = {"errors": [{"error": "RATE_LIMIT_REACHED",
                                            "message": "Rate limit exceeded. Please try again later"}]}
            else:
                content = {"error": exc.error}
            return JSONResponse(content, status_code=exc.status, headers=exc.headers)
        except json.JSONDecodeError:
            entry["status"] = 422
            return JSONResponse({"error": {"type": "INVALID_REQUEST_UNKNOWN", "message": "Invalid request"}},
                                status_code=422)

    async def _schema(self, request: Request) -> JSONResponse:
        self.log.append({"method": "GET", "base": request.path_params["base"], "path": request.url.path,
                         "time": time.monotonic(), "records": 0, "status": 200})
        try:
            self._check(request)
            tables = self.bases.get(request.path_params["base"])
            if tables is None or not self.schema_readable:
                raise AirtableError(403, NOT_PERMITTED)
        except AirtableError as exc:
            self.log[-1]["status"] = exc.status
            return JSONResponse({"error": exc.error}, status_code=exc.status, headers=exc.headers)
        return JSONResponse({"tables": [
            {"id": t.id, "name": t.name, "primaryFieldId": f"fld{0:014d}",
             "fields": [{"id": f"fld{i:014d}", "name": n, "type": kind, **self._field_options(t, n, kind)}
                        for i, (n, kind) in enumerate(t.fields.items())],
             "views": [{"id": f"viw{i:014d}", "name": v, "type": "grid"} for i, v in enumerate(t.views)]}
            for t in tables.values()]})

    @staticmethod
    def _field_options(table: FakeTable, name: str, kind: str) -> dict[str, Any]:
        if kind not in ("singleSelect", "multipleSelects"):
            return {}
        return {"options": {"choices": [{"id": f"sel{i:014d}", "name": o, "color": "blueLight2"}
                                        for i, o in enumerate(sorted(table.select_options.get(name, ())))]}}

    async def _list_post(self, request: Request) -> JSONResponse:
        return await self._handle(request, lambda r, t, body: self._list(t, body))

    async def _records(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            query = request.query_params
            options = {k: v for k, v in query.items() if k in ("pageSize", "offset", "maxRecords", "view",
                                                                "filterByFormula")}
            options["fields"] = query.getlist("fields[]") or query.getlist("fields")
            return await self._handle(request, lambda r, t, body: self._list(t, options))
        if request.method == "POST":
            return await self._handle(request, lambda r, t, body: self._create(t, body))
        return await self._handle(request, lambda r, t, body: self._update(t, body, request.method == "PUT"))

    # -------------------------------------------------------------- operations
    def _list(self, table: FakeTable, options: dict[str, Any]) -> dict[str, Any]:
        try:
            page_size = int(options.get("pageSize") or MAX_PAGE_SIZE)
        except ValueError:
            raise _unprocessable("INVALID_PAGE_SIZE", "pageSize must be an integer") from None
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _unprocessable("INVALID_PAGE_SIZE", f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        records = list(table.records.values())
        if view := options.get("view"):
            if view not in table.views:
                raise _unprocessable("VIEW_NAME_NOT_FOUND", f'Could not find view "{view}" in table')
            if table.views[view]:
                records = self._filter(records, table.views[view])
        if formula := options.get("filterByFormula"):
            records = self._filter(records, formula)
        if max_records := options.get("maxRecords"):
            records = records[:int(max_records)]
        start = 0
        if offset := options.get("offset"):
            match = re.fullmatch(r"itr[0-9a-z]+/(\d+)", str(offset))
            if not match:
                raise _unprocessable("LIST_RECORDS_ITERATOR_NOT_AVAILABLE", "Iterator not available")
            start = int(match.group(1))
        page = records[start:start + page_size]
        answer: dict[str, Any] = {"records": [table.as_json(r, options.get("fields") or None) for r in page]}
        if start + page_size < len(records):
            answer["offset"] = f"itr{table.id.lower()}/{start + page_size}"
        return answer

    def _filter(self, records: list[dict[str, Any]], formula: str) -> list[dict[str, Any]]:
        try:
            predicate = _parse_formula(formula)
        except ValueError:
            raise _unprocessable("INVALID_FILTER_BY_FORMULA",
                                 f"The formula for filtering records is invalid: {formula}") from None
        return [r for r in records if predicate(r["fields"])]

    def _batch(self, body: Any) -> list[Any]:
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise _unprocessable("INVALID_RECORDS", '"records" must be a non-empty array')
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise _unprocessable("INVALID_RECORDS", f"A maximum of {MAX_RECORDS_PER_REQUEST} records can be "
                                 f"created per request but you have provided {len(records)}.")
        return records

    def _create(self, table: FakeTable, body: Any) -> dict[str, Any]:
        typecast = bool(body.get("typecast")) if isinstance(body, dict) else False
        single = isinstance(body, dict) and "fields" in body and "records" not in body
        items = [body] if single else self._batch(body)
        casted = [table.cast_all(item.get("fields", {}), typecast) for item in items]  # all or nothing
        created = []
        for fields in casted:
            created.append(table.as_json(table.records[table.insert(fields)]))
        return created[0] if single else {"records": created}

    def _update(self, table: FakeTable, body: Any, replace: bool) -> dict[str, Any]:
        items = self._batch(body)
        typecast = bool(body.get("typecast"))
        upsert = body.get("performUpsert")
        merge_on: list[str] = []
        if upsert is not None:
            merge_on = upsert.get("fieldsToMergeOn") if isinstance(upsert, dict) else None
            if not isinstance(merge_on, list) or not 1 <= len(merge_on) <= 3:
                raise _unprocessable("INVALID_REQUEST_UNKNOWN", "fieldsToMergeOn must list 1 to 3 fields")
            for name in merge_on:
                if name not in table.fields:
                    raise _unprocessable("UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
        plan: list[tuple[str | None, dict[str, Any]]] = []
        for item in items:
            fields = table.cast_all(item.get("fields", {}), typecast)
            record_id = item.get("id")
            if record_id is None:
                if not merge_on:
                    raise _unprocessable("INVALID_RECORDS",
                                         "Each record needs an id unless performUpsert is set")
                if any(fields.get(name) in (None, "") for name in merge_on):
                    raise _unprocessable("INVALID_VALUE_FOR_COLUMN",
                                         "A record is missing a fieldsToMergeOn value")
                matches = [r for r in table.records.values()
                           if all(r["fields"].get(n) == fields.get(n) for n in merge_on)]
                if len(matches) > 1:
                    raise _unprocessable("INVALID_VALUE_FOR_COLUMN",
                                         "More than one record matches the fieldsToMergeOn values")
                record_id = matches[0]["id"] if matches else None
            elif record_id not in table.records:
                raise _unprocessable("ROW_DOES_NOT_EXIST",
                                     f"Record ID {record_id} does not exist in this table")
            plan.append((record_id, fields))
        out, created, updated = [], [], []
        for record_id, fields in plan:
            if record_id is None:
                record_id = table.insert(fields)
                created.append(record_id)
            else:
                record = table.records[record_id]
                record["fields"] = fields if replace else {**record["fields"], **fields}
                record["modified"] = _now()
                updated.append(record_id)
            out.append(table.as_json(table.records[record_id]))
        answer: dict[str, Any] = {"records": out}
        if upsert is not None:
            answer.update(createdRecords=created, updatedRecords=updated)
        return answer
