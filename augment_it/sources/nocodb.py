"""NocoDB: read a table through the v2 REST API with httpx.

URI: `nocodb://TABLE_ID` or `nocodb://BASE_ID/TABLE_ID_OR_TITLE`, with optional `?view=VIEW_ID`,
`where=(field,eq,value)`, `fields=a,b`, `key=Id` (the primary key, NocoDB's default `Id`) and
`block=NAME`. Rows are read with `GET /api/v2/tables/{tableId}/records`, paged by offset with the
`pageSize` the server reports (a deployment may cap `limit`) until `pageInfo.isLastPage`.
Each record keeps its primary key in STORE_KEY for the sink, and names its table by id in SOURCE
(`nocodb:TABLE_ID#KEY`) so the sink writes that key only onto the same table. A MultiSelect, which
the API gives as its options joined by commas (an option holds no comma), is read as their list,
as Airtable gives one, when the table's columns can be read. The fields NocoDB keeps for itself
(`CreatedAt`, `UpdatedAt`: `system` in the table's meta) are left out: a write-back changes
`UpdatedAt`, and every record would then read as changed, to be reviewed again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from augment_it.connections import ConnectionSettings, StoreURI, load_settings, pacer_for
from augment_it.errors import UserInputError
from augment_it.records import InputError
from augment_it.sources import SourceRead, register_scheme

PAGE_LIMIT = 1000  # NocoDB's default maximum page size
RETRY_STATUSES = {429, 502, 503, 504}
IDEMPOTENT = {"GET", "PATCH", "PUT", "DELETE"}
# The fields NocoDB adds to a table it creates (a row's times, who made and changed it, its order).
SYSTEM_FIELDS = ("CreatedAt", "UpdatedAt", "nc_created_by", "nc_updated_by", "nc_order")
# Column types NocoDB computes (nocodb-sdk isVirtualCol): a value sent for one is dropped unseen.
COMPUTED = {"LinkToAnotherRecord", "Links", "Formula", "Rollup", "Lookup", "QrCode", "Barcode", "Button",
            "CreatedTime", "LastModifiedTime", "CreatedBy", "LastModifiedBy"}


class NocoDBSettings(ConnectionSettings):
    ENV: ClassVar[dict[str, str]] = {"url": "NOCODB_URL", "api_token": "NOCODB_API_TOKEN"}
    BLOCK: ClassVar[str] = "NocoDBConnection"
    SERVICE: ClassVar[str] = "NocoDB"

    url: str = "https://app.nocodb.com"
    api_token: SecretStr
    requests_per_second: float = 5.0
    timeout_seconds: float = 30.0
    max_retries: int = 5
    batch_size: int = 100  # rows per bulk PATCH/POST


class NocoDBUnreachable(UserInputError):
    """No answer from NocoDB (connection refused, dropped or timed out) after the retries allowed."""


def location(table_id: str) -> str:
    """How records read from a table name it in SOURCE (before `#KEY`), whatever the URI spelled."""
    return f"nocodb:{table_id}"


def error_text(response: httpx.Response) -> str:
    """NocoDB's error body (`msg` in older, `message`/`error` in newer releases), one line."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {response.text[:200]}"
    if isinstance(body, dict):
        detail = body.get("msg") or body.get("message") or body.get("error") or body
        code = body.get("error")
        if isinstance(code, str) and code != detail:
            detail = f"{code}: {detail}"  # e.g. ERR_INVALID_VALUE_FOR_FIELD: the message
        return f"HTTP {response.status_code} {detail}"
    return f"HTTP {response.status_code} {body}"


def retried(status: int, method: str) -> bool:
    """Whether NocoDBClient retries an answer with STATUS to METHOD: a rate limit always (nothing
    was applied), gateway errors only where a repeat changes nothing more."""
    return status == 429 or (status in RETRY_STATUSES and method in IDEMPOTENT)


class NocoDBClient:
    """The few v2 calls the connector makes; paced, and retried on 429 and gateway errors."""

    def __init__(self, settings: NocoDBSettings) -> None:
        self.settings = settings
        self.pacer = pacer_for(f"nocodb:{settings.url}", settings.requests_per_second)
        self.http = httpx.Client(base_url=settings.url.rstrip("/"), timeout=settings.timeout_seconds,
                                 headers={"xc-token": settings.api_token.get_secret_value()})

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(self.settings.max_retries + 1):
            self.pacer.wait()
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                # A POST that was sent may have been applied: repeating it could insert rows twice.
                if method not in IDEMPOTENT or attempt == self.settings.max_retries:
                    raise NocoDBUnreachable(f"cannot reach NocoDB at {self.settings.url}: "
                                            f"{type(exc).__name__}") from None
                time.sleep(min(2 ** attempt, 30))
                continue
            if not retried(response.status_code, method) or attempt == self.settings.max_retries:
                return response
            time.sleep(_retry_delay(response, attempt))
        raise AssertionError("unreachable")

    def table_id(self, base: str | None, table: str) -> str:
        """A table id as given, or looked up by title in the base's table list."""
        if base is None:
            return table
        response = self.request("GET", f"/api/v2/meta/bases/{base}/tables")
        if response.status_code != 200:
            raise UserInputError(f"nocodb:{base}: cannot list tables: {error_text(response)}")
        for item in response.json().get("list", []):
            if table in (item.get("id"), item.get("title"), item.get("table_name")):
                return str(item["id"])
        raise UserInputError(f"nocodb:{base}: no table {table!r}")

    def table_columns(self, table_id: str) -> list[dict[str, Any]] | None:
        """`columns[]` of `GET /api/v2/meta/tables/{tableId}`; None when they cannot be read (no
        access, or no columns in the answer)."""
        response = self.request("GET", f"/api/v2/meta/tables/{table_id}")
        try:
            columns = response.json().get("columns") if response.status_code == 200 else None
        except (ValueError, AttributeError):
            columns = None
        if not isinstance(columns, list) or not columns:
            return None
        return [c for c in columns if isinstance(c, dict)]

    def writable_columns(self, table_id: str) -> dict[str, str] | None:
        """The names a record may write, each with its column's type (`uidt`); None when the
        table's columns cannot be read (a check we cannot make is no reason to refuse the write)."""
        return writable(self.table_columns(table_id))

    def list_rows(self, table_id: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        offset, limit = 0, PAGE_LIMIT
        while True:
            response = self.request("GET", f"/api/v2/tables/{table_id}/records",
                                    params={**params, "offset": offset, "limit": limit})
            if response.status_code != 200:
                raise UserInputError(f"nocodb:{table_id}: cannot read rows: {error_text(response)}")
            body = response.json()
            page = body.get("list", [])
            rows.extend(page)
            info = body.get("pageInfo") or {}
            if info.get("isLastPage", True) or not page:
                return rows
            # Page by the size the server applied: a deployment may cap `limit` below what we sent.
            limit = int(info.get("pageSize") or len(page))
            offset += len(page)


def writable(columns: list[dict[str, Any]] | None) -> dict[str, str] | None:
    """Each column by `title`, `column_name` or `id`, as the server maps them, with its type,
    leaving out computed columns the server skips."""
    if columns is None:
        return None
    return {str(c[name]): str(c.get("uidt")) for c in columns if c.get("uidt") not in COMPUTED
            for name in ("title", "column_name", "id") if c.get(name)}


def system_fields(columns: list[dict[str, Any]] | None) -> set[str]:
    """The fields NocoDB keeps for itself, but for the primary key: `system` columns, or the names
    it gives them when the table's columns cannot be read."""
    if columns is None:
        return set(SYSTEM_FIELDS)
    return {str(c["title"]) for c in columns if c.get("system") and not c.get("pk") and c.get("title")}


def _retry_delay(response: httpx.Response, attempt: int) -> float:
    header = response.headers.get("retry-after")
    try:
        return min(float(header), 60.0) if header else min(0.5 * 2 ** attempt, 30.0)
    except ValueError:
        return min(0.5 * 2 ** attempt, 30.0)


@dataclass
class NocoDBTarget:
    base: str | None
    table: str
    settings: NocoDBSettings
    uri: StoreURI

    @classmethod
    def parse(cls, uri: str) -> NocoDBTarget:
        parsed = StoreURI.parse(uri)
        segments = parsed.segments
        if len(segments) == 1:
            base, table = None, segments[0]
        elif len(segments) == 2:
            base, table = segments
        else:
            raise InputError(f"{uri}: expected nocodb://TABLE_ID or nocodb://BASE_ID/TABLE")
        return cls(base, table, load_settings(NocoDBSettings, parsed.one("block")), parsed)

    @property
    def key(self) -> str:
        return self.uri.one("key") or "Id"

    @property
    def name(self) -> str:
        return f"nocodb:{self.table}"


@dataclass
class NocoDBSource:
    target: NocoDBTarget

    def read(self) -> SourceRead:
        params: dict[str, Any] = {}
        if view := self.target.uri.one("view"):
            params["viewId"] = view
        if where := self.target.uri.one("where"):
            params["where"] = where
        if fields := self.target.uri.many("fields"):
            params["fields"] = ",".join(dict.fromkeys([self.target.key, *fields]))
        client = NocoDBClient(self.target.settings)
        try:
            table_id = client.table_id(self.target.base, self.target.table)
            rows = client.list_rows(table_id, params)
            columns = client.table_columns(table_id)
        except UserInputError as exc:
            raise InputError(str(exc)) from None
        finally:
            client.close()
        kinds = writable(columns) or {}
        multi_select = [name for name, kind in kinds.items() if kind == "MultiSelect"]
        key = self.target.key
        own = system_fields(columns) - {key}
        # NocoDB numbers the rows itself (an `ID` column, `Id` unless renamed): a blank row has its number.
        numbered = kinds.get(key) == "ID" if columns else key == "Id"
        generated = {key} if numbered else set()
        read = SourceRead()
        for row_number, row in enumerate(rows, start=1):
            row = {name: value for name, value in row.items() if name not in own}
            for name in multi_select:
                if isinstance(row.get(name), str):
                    row[name] = [option for option in row[name].split(",") if option]
            store_key = row.get(key)
            where = f"{location(table_id)}#{store_key}"
            if store_key is None:
                read.reject(row_number, where, f"{where}: the row has no primary key {key!r}",
                            raw=str(row)[:2000])
                continue
            read.add(row, row_number, where, store_key=store_key, generated=generated)
        return read


def open_nocodb(uri: str) -> NocoDBSource:
    return NocoDBSource(NocoDBTarget.parse(uri))


register_scheme("nocodb", open_nocodb)
