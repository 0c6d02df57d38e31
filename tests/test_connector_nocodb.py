"""NocoDB connector against a stand-in that follows the NocoDB v2 REST API documentation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from augment_it.connections import STORE_KEY
from augment_it.errors import UserInputError
from augment_it.sinks import open_sink
from augment_it.sources import open_source
from tests.standins.nocodb import NocoDBStandin

TOKEN = "nc-token-0123456789abcdef"
COLUMNS = {"name": "SingleLineText", "description": "LongText", "summary": "LongText", "word_count": "Number",
           "reading_time_min": "Number", "language": "SingleLineText", "quality_score": "Number",
           "score": "Number"}


@pytest.fixture
def nocodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[NocoDBStandin]:
    with NocoDBStandin(token=TOKEN, max_limit=25) as server:
        monkeypatch.setenv("NOCODB_API_TOKEN", TOKEN)
        monkeypatch.setenv("NOCODB_URL", server.url)
        yield server


def companies(n: int) -> list[dict]:
    return [{"name": f"Company {i}", "description": f"Company {i} makes things number {i} for people."}
            for i in range(n)]


def test_reads_every_page_by_the_size_the_server_applies(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(60))
    read = open_source(f"nocodb://{table.id}").read()
    assert [r["Id"] for r in read.records] == list(range(1, 61))
    offsets = [int(e["query"]["offset"]) for e in nocodb.log if e["method"] == "GET"]
    assert offsets == [0, 25, 50], "limit 1000 was capped to 25: paging follows pageInfo.pageSize"
    by_title = open_source("nocodb://pBase/Companies?where=(name,eq,Company 7)").read()
    assert [(r["name"], r[STORE_KEY]) for r in by_title.records] == [("Company 7", 8)]


def test_write_back_patches_rows_and_retries_429(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(30))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    records["summary"] = "written"
    nocodb.fail_next(429, {"msg": "Too many requests"}, {"Retry-After": "1"})
    counts = open_sink(f"nocodb://{table.id}", ["summary"]).write(records)
    assert (counts["updated"], counts["created"], counts["failed"]) == (30, 0, 0)
    assert {row["summary"] for row in table.rows.values()} == {"written"}
    assert len(table.rows) == 30


def test_a_bad_value_fails_only_its_row(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(4))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    records["score"] = pd.Series([1, 2, "three", 4], dtype=object)
    counts = open_sink(f"nocodb://{table.id}", ["score"]).write(records)
    assert (counts["updated"], counts["failed"]) == (3, 1)
    assert "ERR_INVALID_VALUE_FOR_FIELD" in counts["errors"][0] or "Invalid value" in counts["errors"][0]
    assert [row["score"] for row in table.rows.values()] == [1, 2, None, 4]


def test_errors_name_the_problem_and_never_the_token(nocodb: NocoDBStandin,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(1))
    with pytest.raises(UserInputError, match="Table 'mNope' not found") as missing:
        open_source("nocodb://mNope").read()
    monkeypatch.setenv("NOCODB_API_TOKEN", "wrong-secret-value")
    with pytest.raises(UserInputError, match="401 Authentication required") as wrong:
        open_sink(f"nocodb://{table.id}", ["summary"]).write(pd.DataFrame({"summary": ["x"], STORE_KEY: [1]}))
    monkeypatch.delenv("NOCODB_API_TOKEN")
    with pytest.raises(UserInputError, match=r"NOCODB_API_TOKEN.*NocoDBConnection block") as unset:
        open_source(f"nocodb://{table.id}")
    for error in (missing.value, wrong.value, unset.value):
        assert TOKEN not in str(error) and "wrong-secret-value" not in str(error)


@pytest.mark.slow
def test_round_trip_updates_the_same_rows_without_duplicates(prefect_api: None, nocodb: NocoDBStandin,
                                                             tmp_path: Path) -> None:
    from tests.pipeline import run_pipeline

    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(12))
    template = tmp_path / "t.yaml"
    template.write_text("name: profile\nprovider: none\nmodel: none\nprompt: 'Describe {{ name }}'\n"
                        "input:\n  name: string\noutput:\n  summary: string\n")
    uri = "nocodb://pBase/Companies"
    first = run_pipeline(uri, template, tmp_path / "run1", destination=uri, id_column="Id")
    assert first.is_completed(), first.message
    assert first.result()["destination"]["updated"] == 12
    assert all(row["word_count"] > 0 and row["language"] == "en" for row in table.rows.values())
    table.rows[1]["description"] = "Now a much longer description " * 5
    words_before = table.rows[1]["word_count"]
    second = run_pipeline(uri, template, tmp_path / "run2", destination=uri, id_column="Id")
    assert second.is_completed(), second.message
    assert (second.result()["destination"]["updated"], second.result()["destination"]["created"]) == (12, 0)
    assert sorted(table.rows) == list(range(1, 13)), "the second run must update, not create"
    assert table.rows[1]["word_count"] > words_before + 15
