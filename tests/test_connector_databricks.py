"""Databricks connector against a stand-in of the SQL Statement Execution API and the Files API."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from augment_it.connections import STORE_KEY
from augment_it.errors import UserInputError
from augment_it.sinks import open_sink
from augment_it.sources import open_source
from tests.standins.databricks import DatabricksStandin

TOKEN = "dapi0123456789abcdef"
TABLE = "dev.crm.companies"
COLUMNS = {"id": "BIGINT", "name": "VARCHAR", "description": "VARCHAR", "active": "BOOLEAN",
           "revenue": "DOUBLE", "summary": "VARCHAR", "word_count": "BIGINT", "reading_time_min": "DOUBLE",
           "language": "VARCHAR", "quality_score": "DOUBLE"}


@pytest.fixture
def databricks(monkeypatch: pytest.MonkeyPatch) -> Iterator[DatabricksStandin]:
    with DatabricksStandin(token=TOKEN, chunk_rows=10, pending_polls=2) as server:
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
        monkeypatch.setenv("DATABRICKS_WAREHOUSE_ID", server.warehouse_id)
        monkeypatch.setenv("AUGMENT_DATABRICKS_POLL_SECONDS", "0.05")
        yield server


def companies(n: int) -> list[dict]:
    return [{"id": i, "name": f"Company {i}",
             "description": f"Company {i} makes things number {i} for people.", "active": i % 2 == 0,
             "revenue": i * 1.5} for i in range(1, n + 1)]


def test_reads_a_table_polling_and_following_chunks(databricks: DatabricksStandin) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(25))
    read = open_source(f"databricks://{TABLE}").read()
    assert [r["id"] for r in read.records] == list(range(1, 26))
    first = read.records[0]
    assert (first["active"], first["revenue"], first[STORE_KEY], first["summary"]) == (False, 1.5, 1, None)
    paths = [r["path"] for r in databricks.requests]
    assert paths.count("/api/2.0/sql/statements/") + paths.count("/api/2.0/sql/statements") == 1
    assert sum(p.endswith(("/result/chunks/1", "/result/chunks/2")) for p in paths) == 2, "3 chunks of 10"
    assert sum(p.count("/") == 5 and "/statements/" in p for p in paths) >= 2, "PENDING/RUNNING were polled"
    query = open_source("databricks://?query=SELECT id, name FROM dev.crm.companies WHERE id > 23").read()
    assert [(r["id"], r["name"]) for r in query.records] == [(24, "Company 24"), (25, "Company 25")]


def test_merge_updates_matched_rows_and_inserts_new_ones(databricks: DatabricksStandin) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(3))
    rows = pd.DataFrame({"id": [2, 3, 4], "summary": ["two", None, "four"], "word_count": [5, 6, None]})
    for _ in range(2):
        counts = open_sink(f"databricks://{TABLE}?key=id", ["summary", "word_count"]).write(rows)
    assert (counts["updated"], counts["created"], counts["failed"]) == (3, 0, 0)
    assert databricks.query(f"SELECT id, summary, word_count FROM {TABLE} ORDER BY id") == [
        (1, None, None), (2, "two", 5), (3, None, 6), (4, "four", None)]


def test_a_failed_statement_is_counted_with_its_message(databricks: DatabricksStandin) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(2))
    counts = open_sink(f"databricks://{TABLE}", ["nope"]).write(pd.DataFrame({"id": [1], "nope": ["x"]}))
    assert counts["failed"] == 1 and "FAILED" in counts["errors"][0] and "nope" in counts["errors"][0]


def test_parquet_to_a_volume(databricks: DatabricksStandin) -> None:
    databricks.add_volume("dev", "crm", "exports")
    frame = pd.DataFrame({"id": [1, 2], "summary": ["a", "b"], "tags": [["x"], []]})
    uri = "databricks:///Volumes/dev/crm/exports/run/exported.parquet"
    for _ in range(2):
        counts = open_sink(uri, ["summary"]).write(frame)
    assert counts["created"] == 2
    uploaded = pd.read_parquet(io.BytesIO(databricks.files["/Volumes/dev/crm/exports/run/exported.parquet"]))
    assert uploaded["summary"].tolist() == ["a", "b"]
    with pytest.raises(UserInputError, match=r"NOT_FOUND|does not exist"):
        open_sink("databricks:///Volumes/dev/crm/missing/x.parquet", []).write(frame)


def test_errors_name_the_problem_and_never_the_token(databricks: DatabricksStandin,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(1))
    with pytest.raises(UserInputError, match="FAILED") as missing:
        open_source("databricks://dev.crm.nope").read()
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-wrong-secret")
    with pytest.raises(UserInputError, match="Invalid access token") as wrong:
        open_source(f"databricks://{TABLE}").read()
    with pytest.raises(UserInputError, match="Invalid access token"):
        open_sink(f"databricks://{TABLE}", ["summary"]).write(pd.DataFrame({"id": [1], "summary": ["x"]}))
    monkeypatch.delenv("DATABRICKS_TOKEN")
    with pytest.raises(UserInputError, match=r"DATABRICKS_TOKEN.*DatabricksConnection block") as unset:
        open_source(f"databricks://{TABLE}")
    for error in (missing.value, wrong.value, unset.value):
        assert TOKEN not in str(error) and "wrong-secret" not in str(error)


@pytest.mark.slow
def test_round_trip_merges_onto_the_same_rows_without_duplicates(prefect_api: None,
                                                                 databricks: DatabricksStandin,
                                                                 tmp_path: Path) -> None:
    from tests.pipeline import run_pipeline

    databricks.add_table(TABLE, COLUMNS, companies(12))
    template = tmp_path / "t.yaml"
    template.write_text("name: profile\nprovider: none\nmodel: none\nprompt: 'Describe {{ name }}'\n"
                        "input:\n  name: string\noutput:\n  summary: string\n")
    uri = f"databricks://{TABLE}?key=id"
    first = run_pipeline(uri, template, tmp_path / "run1", destination=uri, id_column="id")
    assert first.is_completed(), first.message
    assert first.result()["destination"]["updated"] == 12
    enriched = f"SELECT count(*) FROM {TABLE} WHERE word_count > 0 AND language = 'en'"
    assert databricks.query(enriched) == [(12,)]
    longer = "Now a much longer description " * 5
    databricks.query(f"UPDATE {TABLE} SET description = '{longer}' WHERE id = 1")
    second = run_pipeline(uri, template, tmp_path / "run2", destination=uri, id_column="id")
    assert second.is_completed(), second.message
    destination = second.result()["destination"]
    assert (destination["updated"], destination["created"]) == (12, 0)
    assert databricks.query(f"SELECT count(*) FROM {TABLE}") == [(12,)]
    assert databricks.query(f"SELECT word_count FROM {TABLE} WHERE id = 1")[0][0] > 20
