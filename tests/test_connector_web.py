"""Web collector: main text from pages, per-URL rejects for hostile pages, private addresses refused."""

from __future__ import annotations

import codecs
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from augment_it.records import REASON, InputError
from augment_it.sources import open_source
from augment_it.sources.web import AddressGuard, web_source_uri
from tests.standins.web import WebStandin

LOOPBACK = "127.0.0.0/8"


@pytest.fixture(scope="module")
def site() -> Iterator[WebStandin]:
    with WebStandin(slow_seconds=30) as server:
        yield server


@pytest.fixture
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in listens on 127.0.0.1, which the collector refuses unless told otherwise."""
    monkeypatch.setenv("AUGMENT_WEB_ALLOW_NETWORKS", LOOPBACK)
    monkeypatch.setenv("AUGMENT_WEB_TIMEOUT", "2")
    monkeypatch.setenv("AUGMENT_WEB_MAX_BYTES", "1000000")


def write_urls(tmp_path: Path, urls: list[str]) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text("# pages to read\n" + "\n".join(urls) + "\n\n")
    return path


def reasons_by_url(rejects: list[dict]) -> dict[str, str]:
    return {r["url"]: r[REASON] for r in rejects}


def test_hostile_pages_become_per_record_rejects(site: WebStandin, tmp_path: Path,
                                                 allow_loopback: None) -> None:
    bad = {
        "/slow": "timed out", "/drip": "timed out", "/huge": "over the 1,000,000 byte limit",
        "/huge-declared": "52,428,800 bytes, over", "/binary": "content type image/png is not a web page",
        "/loop/a": "redirect loop", "/chain/9": "more than 5 redirects", "/notfound": "HTTP 404",
        "/private/secret": "robots.txt", "/to-metadata": "169.254.169.254 is a link-local address",
    }
    good = ["/article/Acme", "/plain", "/chain/2"]
    urls = [site.url_for(p) for p in [*good, *bad]] + ["ftp://example.com/file"]
    started = time.monotonic()
    read = open_source(web_source_uri(str(write_urls(tmp_path, urls)), None)).read()
    elapsed = time.monotonic() - started

    assert elapsed < 15, "slow pages must be cut off by the per-URL time limit"
    assert [r["url"] for r in read.records] == [site.url_for(p) for p in good]
    acme = read.records[0]
    assert "Acme builds warehouse robots" in acme["page_text"]
    assert "Home | About" not in acme["page_text"], "navigation is not main text"
    assert acme["page_title"] and "Acme" in acme["page_title"]
    assert read.records[2]["page_url"] == site.url_for("/chain/0")
    reasons = reasons_by_url(read.rejects)
    for path, expected in bad.items():
        assert expected in reasons[site.url_for(path)], (path, reasons[site.url_for(path)])
    assert "not an http(s) URL" in reasons["ftp://example.com/file"]
    assert all(r["_source"].startswith("urls.txt:") for r in read.rejects)


def test_loopback_is_refused_unless_allowed(site: WebStandin, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUGMENT_WEB_ALLOW_NETWORKS", raising=False)
    before = len(site.paths)
    urls = [site.url_for("/article/Acme"), site.url_for("/plain").replace("127.0.0.1", "localhost")]
    read = open_source(web_source_uri(str(write_urls(tmp_path, urls)), None)).read()
    assert read.records == []
    assert all("loopback address (not allowed)" in r[REASON] for r in read.rejects)
    assert len(site.paths) == before, "a refused address must not be contacted at all"


@pytest.mark.parametrize(("address", "refused"), [
    ("10.1.2.3", True), ("172.16.0.1", True), ("192.168.1.1", True), ("127.0.0.1", True),
    ("169.254.169.254", True), ("0.0.0.0", True), ("100.64.0.1", True), ("224.0.0.1", True),
    ("::1", True), ("fe80::1", True), ("fc00::1", True), ("::ffff:127.0.0.1", True),
    ("::ffff:10.0.0.1", True), ("8.8.8.8", False), ("2606:4700:4700::1111", False),
])
def test_address_guard(address: str, refused: bool) -> None:
    assert (AddressGuard([]).problem(ipaddress.ip_address(address)) is not None) is refused


def test_allowing_one_network_allows_only_it() -> None:
    guard = AddressGuard(["10.1.0.0/16"])
    assert guard.problem(ipaddress.ip_address("10.1.9.9")) is None
    assert guard.problem(ipaddress.ip_address("10.2.0.1")) is not None


def test_per_host_concurrency_is_polite(tmp_path: Path, allow_loopback: None) -> None:
    with WebStandin() as site:  # its own site: abandoned slow requests of other tests still run
        urls = [site.url_for(f"/article/A{i}?delay=0.2") for i in range(8)]
        read = open_source(web_source_uri(str(write_urls(tmp_path, urls)), None)).read()
    assert len(read.records) == 8
    assert site.max_in_flight == 2


def test_url_column_of_any_source(site: WebStandin, tmp_path: Path, allow_loopback: None) -> None:
    csv = tmp_path / "companies.csv"
    pd.DataFrame({"name": ["Acme", "Nobody", "Blank"],
                  "website": [site.url_for("/article/Acme"), site.url_for("/notfound"), None]}).to_csv(
        csv, index=False)
    read = open_source(web_source_uri(str(csv), "website")).read()
    assert [(r["name"], "Acme builds" in r["page_text"]) for r in read.records] == [("Acme", True)]
    reasons = {r["name"]: r[REASON] for r in read.rejects}
    assert "HTTP 404" in reasons["Nobody"]
    assert "holds no URL" in reasons["Blank"]


def test_url_column_of_a_file_in_a_legacy_encoding(site: WebStandin, tmp_path: Path,
                                                   allow_loopback: None) -> None:
    csv = tmp_path / "companies.csv"
    csv.write_bytes(f"name,website\nAcme Zürich,{site.url_for('/article/Acme')}\n".encode("cp1252"))
    read = open_source(web_source_uri(str(csv), "website", "cp1252")).read()
    assert [(r["name"], "Acme builds" in r["page_text"]) for r in read.records] == [("Acme Zürich", True)]
    with pytest.raises(InputError, match="unknown text encoding 'klingon'"):
        open_source(web_source_uri(str(csv), "website", "klingon"))


@pytest.mark.slow
def test_pipeline_collects_pages_and_quarantines_failures(prefect_api: None, site: WebStandin, tmp_path: Path,
                                                          allow_loopback: None) -> None:
    from tests.pipeline import assert_every_record_once, run_pipeline

    template = tmp_path / "t.yaml"
    template.write_text("name: page-notes\nprovider: none\nmodel: none\nprompt: 'Summarize {{ page_text }}'\n"
                        "output:\n  summary: string\n")
    urls = write_urls(tmp_path, [site.url_for("/article/Acme"), site.url_for("/binary")])
    state = run_pipeline(web_source_uri(str(urls), None), template, tmp_path / "out")
    assert state.is_completed(), state.message
    summary = state.result()
    assert (summary["collected"], summary["exported"], summary["quarantined"]) == (2, 1, 1)
    assert_every_record_once(tmp_path / "out", summary)
    quarantined = pd.read_parquet(tmp_path / "out" / "quarantined.parquet")
    assert "not a web page" in quarantined[REASON].iloc[0]


FRENCH = "La crème était « naïve » et très légère, comme une mousse au café. "
POLISH = "Mistrz kuchni w Łodzi podał żurek, pierogi i gołąbki. "


def legacy_html(title: str, paragraph: str, head: str = "") -> str:
    body = paragraph * 3
    return (f"<html><head>{head}<title>{title}</title></head><body><nav>Home | About</nav>"
            f"<article><h1>{title}</h1><p>{body}</p><p>{body}</p></article></body></html>")


def fetch_one(tmp_path: Path, url: str) -> dict:
    read = open_source(web_source_uri(str(write_urls(tmp_path, [url])), None)).read()
    assert read.rejects == []
    [record] = read.records
    return record


@pytest.mark.parametrize(("name", "content_type", "head", "encoding", "title", "paragraph"), [
    # The HTTP charset alone: trafilatura guessed cp1250 ("naďve crčme") and replaced Polish with U+FFFD.
    ("header-latin1", "text/html; charset=iso-8859-1", "", "latin-1", "Crème brûlée", FRENCH),
    ("header-1250", "text/html; charset=windows-1250", "", "cp1250", "Łódź", POLISH),
    # The HTTP charset wins over a <meta> that says otherwise.
    ("header-beats-meta", "text/html; charset=windows-1250", '<meta charset="iso-8859-1">', "cp1250",
     "Łódź", POLISH),
    # No HTTP charset: the <meta> one (a guard: the old guess read it too), or a guess that prefers
    # windows-1252 on a tie (the old one read this as cp1250).
    ("meta-latin1", "text/html", '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">',
     "latin-1", "Crème brûlée", FRENCH),
    ("undeclared-latin1", "text/html", "", "latin-1", "Crème brûlée", FRENCH),
])
def test_html_in_legacy_encodings(site: WebStandin, tmp_path: Path, allow_loopback: None, name: str,
                                  content_type: str, head: str, encoding: str, title: str,
                                  paragraph: str) -> None:
    url = site.serve_raw(name, content_type, legacy_html(title, paragraph, head).encode(encoding))
    record = fetch_one(tmp_path, url)
    assert paragraph.strip() in record["page_text"]
    assert "\ufffd" not in record["page_text"]
    assert record["page_title"] == title


@pytest.mark.parametrize(("name", "content_type", "body", "expected"), [
    # Labelled latin-1 but windows-1252, as browsers read it: 0x93/0x94 are curly quotes.
    ("plain-header", "text/plain; charset=iso-8859-1", "Café “crème” au lait.".encode("cp1252"),
     "Café “crème” au lait."),
    ("plain-undeclared", "text/plain", "Café crème et naïveté.".encode("latin-1"), "Café crème et naïveté."),
    # A byte order mark wins over the HTTP charset (and is not part of the text).
    ("plain-bom", "text/plain; charset=windows-1252", codecs.BOM_UTF8 + "Café crème.".encode(),
     "Café crème."),
])
def test_plain_text_in_legacy_encodings(site: WebStandin, tmp_path: Path, allow_loopback: None, name: str,
                                        content_type: str, body: bytes, expected: str) -> None:
    record = fetch_one(tmp_path, site.serve_raw(name, content_type, body))
    assert record["page_text"] == expected
    assert record["page_title"] is None


def test_undecodable_bytes_are_replaced_with_a_warning(site: WebStandin, tmp_path: Path,
                                                      allow_loopback: None) -> None:
    url = site.serve_raw("plain-garbled", "text/plain", b"Caf\xe9 \x00\x01\x02\xff\xfe\x80\x81 ok")
    with pytest.warns(UserWarning, match=r"plain-garbled: the page's character encoding is unclear"):
        record = fetch_one(tmp_path, url)
    assert record["page_text"].startswith("Caf\ufffd") and record["page_text"].endswith("ok")
