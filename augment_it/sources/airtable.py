"""Airtable: read a table (optionally a view and a formula) with pyairtable.

URI: `airtable://BASE_ID/TABLE_ID_OR_NAME?view=VIEW&formula=FORMULA&fields=a,b&block=NAME`.
Each record keeps its Airtable record id in STORE_KEY so the sink can write back onto it.
Requests are paced under Airtable's 5 requests per second per base; a 429 is retried after the
server's Retry-After (or a backoff reaching the 30 s Airtable asks for).

Where the token may read the base's schema, the fields Airtable fills in itself are known by type:
a last-modified time or author is not read (a write-back changes it, and every record would then
read as changed, to be reviewed again), and an auto number or creation time does not make a row
nobody filled in a record to send to the model.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr
from urllib3.util.retry import Retry

from augment_it.connections import ConnectionSettings, StoreURI, load_settings, pacer_for
from augment_it.errors import InputNotice, first_few
from augment_it.records import InputError
from augment_it.sources import SourceRead, register_scheme

if TYPE_CHECKING:
    from pyairtable import Table

DEFAULT_ENDPOINT = "https://api.airtable.com"
RETRYABLE_ANY_METHOD = frozenset({429})  # Airtable did not apply a rate-limited request
RETRYABLE_IDEMPOTENT = frozenset({500, 502, 503, 504})  # may have been applied: retry GET/PATCH only
# Methods whose repeat changes nothing more: a create (POST) that timed out may have been applied,
# and sending it again would create the records twice. PATCH updates by id or upserts on a key.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PATCH", "PUT", "DELETE"})


# Field types Airtable fills in itself: those a write changes, and those that only a new row sets.
CHANGED_BY_WRITES = frozenset({"lastModifiedTime", "lastModifiedBy"})
SET_ON_CREATION = frozenset({"autoNumber", "createdTime", "createdBy"})


class AirtableSettings(ConnectionSettings):
    ENV: ClassVar[dict[str, str]] = {"api_key": "AIRTABLE_API_KEY", "endpoint_url": "AIRTABLE_ENDPOINT_URL"}
    BLOCK: ClassVar[str] = "AirtableConnection"
    SERVICE: ClassVar[str] = "Airtable"

    api_key: SecretStr
    endpoint_url: str = DEFAULT_ENDPOINT
    requests_per_second: float = 4.5  # Airtable allows 5 per base; stay under it
    timeout_seconds: float = 30.0
    max_retries: int = 6


def retried(status: int, method: str) -> bool:
    """Whether an answer with STATUS to METHOD is one the client retries (see _AirtableRetry)."""
    return status in RETRYABLE_ANY_METHOD or (status in RETRYABLE_IDEMPOTENT
                                              and method.upper() in IDEMPOTENT_METHODS)


class _AirtableRetry(Retry):
    """429 is retried for every method (as pyairtable does); server errors and read errors (a
    timeout or a dropped connection after the request was sent) only for methods safe to repeat."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if self.total is not None and self.total < 1:  # type: ignore[operator]
            return False
        return retried(status_code, method)

    def increment(self, method: str | None = None, url: str | None = None, *args: Any,
                  **kwargs: Any) -> Retry:
        # pyairtable reads through POST .../listRecords when the query is too long for a URL:
        # a read, so safe to repeat, unlike the POST that creates records.
        if method == "POST" and url and url.split("?", 1)[0].endswith("/listRecords"):
            method = "GET"
        return super().increment(method, url, *args, **kwargs)


def airtable_table(settings: AirtableSettings, base: str, table: str) -> Table:
    """A pyairtable Table whose every request waits its turn for the base and retries 429s."""
    import requests
    from pyairtable import Api

    retry = _AirtableRetry(total=settings.max_retries, backoff_factor=1.0, backoff_max=30.0,
                           respect_retry_after_header=True, allowed_methods=IDEMPOTENT_METHODS,
                           status_forcelist=sorted(RETRYABLE_ANY_METHOD | RETRYABLE_IDEMPOTENT),
                           raise_on_status=False)
    pacer = pacer_for(f"airtable:{settings.endpoint_url}:{base}", settings.requests_per_second)

    class PacedAdapter(requests.adapters.HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            pacer.wait()
            return super().send(request, *args, **kwargs)

    api = Api(settings.api_key.get_secret_value(), timeout=(10, settings.timeout_seconds),
              retry_strategy=None, endpoint_url=settings.endpoint_url.rstrip("/"))
    adapter = PacedAdapter(max_retries=retry)
    api.session.mount("https://", adapter)
    api.session.mount("http://", adapter)
    return api.table(base, table)


def error_of(response: Any) -> Any:
    """The `error` of an Airtable error body: `{"type": ..., "message": ...}` or a bare
    `"NOT_FOUND"`; None without one. Raises ValueError when the body is not JSON."""
    body = response.json()
    return body.get("error") if isinstance(body, dict) else None


def describe_http_error(exc: Exception) -> str:
    """One line from an Airtable error: status and the error type/message, never request headers."""
    import requests

    response = getattr(exc, "response", None)
    if isinstance(exc, requests.HTTPError) and response is not None:
        try:
            error = error_of(response)
        except ValueError:
            error = response.text[:200]
        if isinstance(error, dict):
            error = f"{error.get('type', '')}: {error.get('message', '')}".strip(": ")
        return f"HTTP {response.status_code} {error or response.reason}"
    if isinstance(exc, requests.ReadTimeout):
        # The request was sent: Airtable may have applied it without answering in time.
        return f"{type(exc).__name__}: no answer from Airtable in time (it may have been applied)"
    if isinstance(exc, requests.RequestException):
        return f"{type(exc).__name__}: cannot reach Airtable"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class AirtableTarget:
    base: str
    table: str
    settings: AirtableSettings
    uri: StoreURI

    @classmethod
    def parse(cls, uri: str) -> AirtableTarget:
        parsed = StoreURI.parse(uri)
        if len(parsed.segments) != 2:
            raise InputError(f"{uri}: expected airtable://BASE_ID/TABLE (table id or name)")
        base, table = parsed.segments
        return cls(base, table, load_settings(AirtableSettings, parsed.one("block")), parsed)

    @property
    def name(self) -> str:
        return f"airtable:{self.base}/{self.table}"

    def table_client(self) -> Table:
        return airtable_table(self.settings, self.base, self.table)


@dataclass
class AirtableSource:
    target: AirtableTarget

    def read(self) -> SourceRead:
        import requests

        options: dict[str, Any] = {"page_size": 100}
        if view := self.target.uri.one("view"):
            options["view"] = view
        if formula := self.target.uri.one("formula"):
            options["formula"] = formula
        if fields := self.target.uri.many("fields"):
            options["fields"] = fields
        table = self.target.table_client()
        try:
            records = table.all(**options)
        except requests.RequestException as exc:
            raise InputError(f"{self.target.name}: cannot read records: {describe_http_error(exc)}") from None
        types = field_types(table, self.target.table) or {}
        not_read = {name for name, kind in types.items() if kind in CHANGED_BY_WRITES}
        generated = {name for name, kind in types.items() if kind in SET_ON_CREATION}
        read = SourceRead()
        unusable: defaultdict[tuple[str, str], list[str]] = defaultdict(list)  # (field, why): record ids
        for row, record in enumerate(records, start=1):
            record_id = record["id"]
            fields = {}
            for name, cell in record.get("fields", {}).items():
                if name in not_read:
                    continue
                fields[name], problem = cell_value(cell)
                if problem:
                    unusable[name, problem].append(record_id)
            read.add(fields, row, f"{self.target.name}#{record_id}", store_key=record_id, generated=generated)
        for (name, problem), ids in unusable.items():
            warnings.warn(f"{self.target.name}: field '{name}' read as empty in {len(ids)} record(s) "
                          f"({first_few(ids, 3)}): {problem}", InputNotice, stacklevel=2)
        return read


def field_types(table: Table, name: str) -> dict[str, str] | None:
    """The fields of table NAME (its id or name) and their types, by the base's schema; None when
    it cannot be read (a token without schema.bases:read is answered 403)."""
    import requests

    try:
        tables = table.api.get(table.base.urls.tables).get("tables", [])
        [schema] = [t for t in tables if name in (t.get("id"), t.get("name"))]
        return {str(f["name"]): str(f.get("type")) for f in schema.get("fields", [])}
    except (requests.RequestException, ValueError, AttributeError, KeyError, TypeError):
        return None


def cell_value(cell: Any) -> tuple[Any, str | None]:
    """A cell as a prompt should see it, and why it is empty if Airtable held no value to use.

    An AI text field reads as its state (`{"state": "generated", "isStale": false, "value": ...}`):
    a prompt got that whole object, so it gets the text. A formula in error reads as
    `{"error": "#ERROR!"}`: that is no value of the field."""
    if isinstance(cell, dict):
        if {"state", "isStale"} <= cell.keys():  # AI text
            if cell["state"] == "error":
                return None, f"its AI text failed in Airtable ({cell.get('errorType') or 'no reason given'})"
            if cell["state"] == "loading" and cell.get("value") is None:
                return None, "its AI text was still being generated in Airtable"
            return cell.get("value"), None
        if cell.keys() == {"error"} and isinstance(cell["error"], str):
            return None, f"its formula gives {cell['error']} in Airtable"
    return cell, None


def open_airtable(uri: str) -> AirtableSource:
    return AirtableSource(AirtableTarget.parse(uri))


register_scheme("airtable", open_airtable)
