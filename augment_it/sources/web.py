"""Web pages: fetch a list of URLs (or a column of URLs in any source) and keep their main text.

URI: `web://?urls=urls.txt` (one URL a line, `#` comments), `web://?url=https://a&url=https://b`,
or `web://?source=INNER_URI&column=COL` to fetch the URL in column COL of every record of another
source (the record keeps its fields and gains `page_url`, `page_title`, `page_text`); `&encoding=E`
names the encoding of the URL list or the inner source's file (`augment run --encoding`).

Fetching is careful because URLs come from data, not from the operator:
- only http(s); the host is resolved and every address checked with `ipaddress`: private,
  loopback, link-local, reserved, multicast and other non-global addresses are refused unless
  their network is listed in `allow_networks` (AUGMENT_WEB_ALLOW_NETWORKS);
- redirects are followed by hand, each hop checked again, at most `max_redirects`, loops refused;
- robots.txt is obeyed (urllib.robotparser; unreachable robots.txt means "don't");
- a time limit covers each whole request (a page that trickles bytes is cut off too), bodies
  stop at `max_bytes`, and only HTML, XHTML and plain text are read;
- text is decoded the way browsers do (HTML standard): a byte order mark, else the HTTP charset,
  else (HTML) a `<meta>` charset, else UTF-8, else a guess; bytes that could not be read as text
  are replaced with U+FFFD and a warning names the page;
- at most `per_host` requests to one host at a time, and its Crawl-delay is kept.
Every failure becomes a reject for that record (quarantine), never a failed run.
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import ipaddress
import re
import socket
import time
import urllib.robotparser
import warnings
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import httpx
from pydantic import field_validator

from augment_it.connections import ConnectionSettings, StoreURI, load_settings
from augment_it.errors import InputNotice
from augment_it.layout import filesystem
from augment_it.records import REASON, ROW, InputError, is_missing
from augment_it.sources import SOURCE, SourceRead, open_source, register_scheme
from augment_it.sources.files.text import decode, printable, text_encoding

PAGE_URL, PAGE_TITLE, PAGE_TEXT = "page_url", "page_title", "page_text"
TEXT_TYPES = {"text/html", "application/xhtml+xml", "text/plain"}
REDIRECTS = {301, 302, 303, 307, 308}
ROBOTS_MAX_BYTES = 512_000
MAX_CRAWL_DELAY = 10.0
BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# Codecs that browsers (the WHATWG Encoding Standard) read differently than Python's namesake: pages
# labelled latin-1 or ascii are windows-1252 in practice (0x80-0x9F are quotes, dashes and €).
WHATWG_CODECS = {"iso8859-1": "cp1252", "ascii": "cp1252", "iso8859-9": "cp1254", "utf-16": "utf-16-le"}
NOT_CHARSETS = {"idna", "punycode", "unicode-escape", "raw-unicode-escape"}  # Python text codecs only
# <meta charset=X>, <meta http-equiv content="...; charset=X">, or XHTML's <?xml encoding="X"?>
META_CHARSET = re.compile(rb"<(?:meta[^>]*?charset|\?xml[^>]*?encoding)\s*=\s*[\"']?\s*([a-z0-9_.:-]+)",
                          re.IGNORECASE)
PRESCAN_BYTES = 1024  # the HTML standard looks for <meta charset> only this far
T = TypeVar("T")


class WebSettings(ConnectionSettings):
    ENV: ClassVar[dict[str, str]] = {"allow_networks": "AUGMENT_WEB_ALLOW_NETWORKS",
                                     "timeout_seconds": "AUGMENT_WEB_TIMEOUT",
                                     "max_bytes": "AUGMENT_WEB_MAX_BYTES",
                                     "user_agent": "AUGMENT_WEB_USER_AGENT"}
    BLOCK: ClassVar[str] = "WebFetchSettings"
    SERVICE: ClassVar[str] = "Web fetching"

    allow_networks: list[str] = []  # e.g. ["127.0.0.1/32"]: networks allowed although not global
    timeout_seconds: float = 20.0  # one whole request (each redirect hop gets its own)
    connect_timeout_seconds: float = 5.0
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    per_host: int = 2
    concurrency: int = 8
    user_agent: str = "augment-it/0.1 (records enrichment; respects robots.txt)"
    respect_robots: bool = True

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allow_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value


class FetchError(Exception):
    """Why one URL gave no page; becomes that record's reject reason."""


@dataclass
class Page:
    url: str
    title: str | None
    text: str


class AddressGuard:
    """Refuses hosts that resolve to non-global addresses outside the allowed networks."""

    def __init__(self, allow_networks: list[str]) -> None:
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allow_networks]

    def problem(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return None
        if address.is_global and not address.is_multicast:
            return None
        kinds = [name for name in ("loopback", "link_local", "unspecified", "multicast", "reserved",
                                   "private") if getattr(address, f"is_{name}")]
        return f"{address} is a {(kinds[0] if kinds else 'non-public').replace('_', '-')} address"

    async def check(self, host: str, port: int) -> None:
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise FetchError(f"cannot resolve host {host}: {exc.strerror}") from None
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        for address in addresses:
            if (problem := self.problem(address)) is not None:
                where = "" if str(address) == host.strip("[]") else f"{host} resolves to "
                raise FetchError(f"refused: {where}{problem} (not allowed)")


@dataclass
class HostState:
    slots: asyncio.Semaphore
    delay: float = 0.0
    last: float = 0.0
    robots: urllib.robotparser.RobotFileParser | None = None
    robots_problem: str | None = None
    robots_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class PageFetcher:
    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.guard = AddressGuard(settings.allow_networks)
        self.hosts: dict[str, HostState] = {}
        self.slots = asyncio.Semaphore(settings.concurrency)
        timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
        # trust_env=False: a proxy from the environment would connect on our behalf and bypass the
        # address check; redirects are followed by hand so each hop is checked.
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False,
                                        headers={"User-Agent": settings.user_agent})

    async def close(self) -> None:
        await self.client.aclose()

    def _host(self, origin: str) -> HostState:
        if origin not in self.hosts:
            self.hosts[origin] = HostState(asyncio.Semaphore(self.settings.per_host))
        return self.hosts[origin]

    async def page(self, url: str) -> Page:
        async with self.slots:
            return await self._page(url)

    async def _page(self, url: str) -> Page:
        final_url, content_type, charset, body = await self._get(url, TEXT_TYPES, self.settings.max_bytes,
                                                                 robots=True)
        # In a thread: guessing an encoding and extracting main text both take CPU time.
        text, title, lossy = await asyncio.to_thread(_read_page, body, content_type, charset, final_url)
        if lossy:
            warnings.warn(f"{final_url[:200]}: the page's character encoding is unclear; bytes that are "
                          "not text in it were replaced with U+FFFD", InputNotice, stacklevel=1)
        if not text:
            raise FetchError("no main text found on the page")
        return Page(final_url, title, text)

    async def _get(self, url: str, types: set[str] | None, max_bytes: int,
                   robots: bool) -> tuple[str, str, str | None, bytes]:
        """The final URL, media type, charset of the Content-Type header (if any) and body."""
        current, seen = url, {url}
        for _hop in range(self.settings.max_redirects + 1):
            parts = urlsplit(current)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise FetchError(f"not an http(s) URL: {current[:200]}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            await self.guard.check(parts.hostname, port)
            origin = f"{parts.scheme}://{parts.netloc.lower()}"
            host = self._host(origin)
            if robots and self.settings.respect_robots:
                await self._obey_robots(origin, host, current)
            async with host.slots:
                wait = host.last + host.delay - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                host.last = time.monotonic()
                # The limit covers one whole request (a page that trickles bytes is cut off too),
                # not the time spent queued behind other requests to the same host.
                try:
                    status, location, content_type, charset, body = await asyncio.wait_for(
                        self._request(current, types, max_bytes), self.settings.timeout_seconds)
                except TimeoutError:
                    raise FetchError(f"timed out after {self.settings.timeout_seconds:g} s") from None
            if status in REDIRECTS and location:
                target = urljoin(current, location)
                if target in seen:
                    raise FetchError(f"redirect loop at {target[:200]}")
                seen.add(target)
                current = target
                continue
            if status >= 400:
                raise FetchError(f"HTTP {status} from {current[:200]}")
            return current, content_type, charset, body
        raise FetchError(f"more than {self.settings.max_redirects} redirects")

    async def _request(self, url: str, types: set[str] | None,
                       max_bytes: int) -> tuple[int, str | None, str, str | None, bytes]:
        try:
            async with self.client.stream("GET", url) as response:
                if response.status_code in REDIRECTS or response.status_code >= 400:
                    return response.status_code, response.headers.get("location"), "", None, b""
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if types is not None and content_type not in types:
                    raise FetchError(f"content type {content_type or 'unknown'} is not a web page")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise FetchError(f"page is {int(declared):,} bytes, over the {max_bytes:,} byte limit")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise FetchError(f"page is over the {max_bytes:,} byte limit")
                return response.status_code, None, content_type, response.charset_encoding, bytes(body)
        except httpx.TimeoutException:
            raise FetchError("timed out waiting for the server") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: cannot fetch {url[:200]}") from None

    async def _obey_robots(self, origin: str, host: HostState, url: str) -> None:
        async with host.robots_lock:
            if host.robots is None and host.robots_problem is None:
                await self._load_robots(origin, host)
        if host.robots_problem is not None:
            raise FetchError(host.robots_problem)
        assert host.robots is not None
        if not host.robots.can_fetch(self.settings.user_agent, url):
            raise FetchError(f"robots.txt of {origin} disallows {url[:200]}")

    async def _load_robots(self, origin: str, host: HostState) -> None:
        parser = urllib.robotparser.RobotFileParser(f"{origin}/robots.txt")
        try:
            _, _, _, body = await self._get(f"{origin}/robots.txt", None, ROBOTS_MAX_BYTES, robots=False)
            parser.parse(body.decode("utf-8", errors="replace").splitlines())
        except FetchError as exc:
            text = str(exc)
            if text.startswith(("HTTP 401", "HTTP 403")):
                parser.disallow_all = True  # robotparser's rule: access-controlled robots.txt = no
            elif text.startswith("HTTP 4"):
                parser.allow_all = True  # no robots.txt: everything allowed
            else:
                host.robots_problem = f"robots.txt of {origin} could not be read ({text}); not fetching"
                return
        delay = parser.crawl_delay(self.settings.user_agent)
        host.delay = min(float(delay), MAX_CRAWL_DELAY) if delay else 0.0
        host.robots = parser


def _codec(label: str | None) -> str | None:
    """Python's codec for a charset label, as browsers read the label; None if unknown or not a charset."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
        b"a".decode(name)  # LookupError for codecs that are not bytes-to-text (base64, zlib, rot13)
    except UnicodeDecodeError:
        pass  # a text codec that just needs more bytes (utf-16)
    except (LookupError, ValueError):
        return None
    return None if name in NOT_CHARSETS else WHATWG_CODECS.get(name, name)


def _c1_controls(error: UnicodeError) -> tuple[str, int]:
    # WHATWG windows-1252 maps the five bytes Python's cp1252 leaves undefined to C1 controls.
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start:error.end].decode("latin-1"), error.end


codecs.register_error("augment-it-c1", _c1_controls)


def _strict(body: bytes, codec: str) -> str | None:
    try:
        return body.decode(codec, errors="augment-it-c1" if codec == "cp1252" else "strict")
    except UnicodeDecodeError:
        return None


def _guess(body: bytes) -> str | None:
    """charset_normalizer's guess; on a tie windows-1252, the most common undeclared legacy encoding
    (left alone, it reads short Latin-1 text as cp1250 or cp1006: "naïve crème" → "naďve crčme")."""
    from charset_normalizer import from_bytes

    sample = body if len(body) <= 20_000 else body[:10_000] + body[-10_000:]
    results = from_bytes(sample)
    best = results.best()
    if best is None:
        return None
    tied = [r for r in results if (r.chaos, r.coherence) == (best.chaos, best.coherence)]
    if any("cp1252" in r.could_be_from_charset for r in tied):
        return "cp1252"
    return best.encoding


def decode_page(body: bytes, charset: str | None, html: bool) -> tuple[str, bool]:
    """The page as text, and whether bytes that could not be decoded were replaced with U+FFFD.

    The HTML standard's order: a byte order mark, the HTTP charset, a <meta> charset in the first
    1024 bytes (HTML only), then UTF-8 and a guess. A declared charset the bytes are not valid in is
    passed over, so a mislabelled page is guessed rather than filled with replacement characters."""
    for bom, codec in BOMS:
        if body.startswith(bom):
            try:
                return body[len(bom):].decode(codec), False
            except UnicodeDecodeError:
                return body[len(bom):].decode(codec, errors="replace"), True
    declared = [_codec(charset)]
    if html and (meta := META_CHARSET.search(body[:PRESCAN_BYTES])):
        codec = _codec(meta.group(1).decode("ascii"))
        # The standard's rule: a <meta> readable as ASCII cannot truthfully declare UTF-16.
        declared.append("utf-8" if codec and codec.startswith("utf-16") else codec)
    candidates = list(dict.fromkeys([*(codec for codec in declared if codec), "utf-8"]))
    for codec in candidates:
        if (text := _strict(body, codec)) is not None:
            return text, False
    if (guess := _guess(body)) and (text := _strict(body, guess)) is not None:
        return text, False
    return body.decode(candidates[0], errors="replace"), True


def _read_page(body: bytes, content_type: str, charset: str | None,
               url: str) -> tuple[str, str | None, bool]:
    """Main text, title and whether decoding was lossy (see `decode_page`)."""
    text, lossy = decode_page(body, charset, html=content_type != "text/plain")
    if content_type == "text/plain":
        return text.strip(), None, lossy
    main, title = _extract(text, url)
    return main, title, lossy


def _extract(html: str, url: str) -> tuple[str, str | None]:
    import trafilatura

    # Text, not bytes: given bytes, trafilatura ignores the HTTP charset and guesses the encoding.
    document = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False)
    if document is None:
        return "", None
    return (document.text or "").strip(), document.title


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def fetch_pages(urls: list[str], settings: WebSettings) -> list[Page | FetchError]:
    fetcher = PageFetcher(settings)
    try:
        async def one(url: str) -> Page | FetchError:
            try:
                return await fetcher.page(url)
            except FetchError as exc:
                return exc
        return await asyncio.gather(*(one(u) for u in urls))
    finally:
        await fetcher.close()


@dataclass
class WebSource:
    uri: StoreURI
    settings: WebSettings

    def _inputs(self) -> tuple[SourceRead, str, bool]:
        """Records that each hold a URL in some column, the column, and whether to add `url`."""
        if inner := self.uri.one("source"):
            column = self.uri.one("column")
            if not column:
                raise InputError("web://?source=... needs &column=NAME: the column holding the URLs")
            return open_source(inner, self.uri.one("encoding")).read(), column, False
        read = SourceRead()
        if listing := self.uri.one("urls"):
            fs, path = filesystem(listing)
            if not fs.exists(path):
                raise InputError(f"URL list {listing} does not exist")
            with fs.open(path, "rb") as handle:
                lines = printable(decode(handle.read(), listing, self.uri.one("encoding"))).splitlines()
            name = listing.rstrip("/").rsplit("/", 1)[-1]
            for line_no, line in enumerate(lines, start=1):
                if line.strip() and not line.strip().startswith("#"):
                    read.add({"url": line.strip()}, len(read.records) + 1, f"{name}:{line_no}")
        else:
            for index, url in enumerate(self.uri.query.get("url", []), start=1):
                read.add({"url": url.strip()}, index, f"url[{index - 1}]")
        if not read.records:
            raise InputError("web source has no URLs: use ?urls=FILE, ?url=URL or ?source=URI&column=COL")
        return read, "url", True

    def read(self) -> SourceRead:
        inputs, column, is_list = self._inputs()
        out = SourceRead(rejects=list(inputs.rejects))
        targets = []
        for record in inputs.records:
            url = record.get(column)
            if is_missing(url) or not str(url).strip():
                out.rejects.append({**record, REASON: f"{record[SOURCE]}: column '{column}' holds no URL"})
            else:
                targets.append((record, str(url).strip()))
        pages = run_async(fetch_pages([u for _, u in targets], self.settings))
        for (record, url), page in zip(targets, pages, strict=True):
            if isinstance(page, FetchError):
                out.rejects.append({**record, REASON: f"{record[SOURCE]}: {url[:200]}: {page}"})
                continue
            out.records.append({**record, PAGE_URL: page.url, PAGE_TITLE: page.title, PAGE_TEXT: page.text})
        if is_list:
            out.records.sort(key=lambda r: r[ROW])
        return out


def web_source_uri(source: str, url_column: str | None, encoding: str | None = None) -> str:
    """The URI `augment run` collects from: a `.txt` list of URLs or a column of URLs become web://,
    which then carries the file's ENCODING."""
    if url_column:
        uri = f"web://?source={quote(source, safe='')}&column={quote(url_column, safe='')}"
    elif "://" not in source and source.lower().endswith(".txt"):
        uri = f"web://?urls={quote(source, safe='')}"
    else:
        return source
    return uri + (f"&encoding={quote(encoding, safe='')}" if encoding else "")


def open_web(uri: str) -> WebSource:
    parsed = StoreURI.parse(uri)
    if encoding := parsed.one("encoding"):
        text_encoding(encoding)  # refused now, not once the file is read
    return WebSource(parsed, load_settings(WebSettings, parsed.one("block")))


register_scheme("web", open_web)
