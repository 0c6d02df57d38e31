"""Web collector: main text from pages, per-URL rejects for hostile pages, private addresses refused."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from augment_it.records import REASON
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
