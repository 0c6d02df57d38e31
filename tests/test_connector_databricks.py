"""Databricks connector against a stand-in of the SQL Statement Execution API and the Files API."""

from __future__ import annotations

import io
import re
import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from databricks.sdk.service.sql import ColumnInfo, StatementParameterListItem

from augment_it.connections import STORE_KEY, load_settings
from augment_it.enrichers import ENRICHED_FIELDS
from augment_it.errors import UserInputError
from augment_it.sinks import open_sink
from augment_it.sources import open_source
from augment_it.sources.databricks import DatabricksSettings, StatementRunner, column_type, convert
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


def test_enrichers_go_only_to_columns_the_table_has(databricks: DatabricksStandin) -> None:
    """A table made for the answers, without a column per enricher, failed every MERGE."""
    columns = {"id": "BIGINT", "name": "VARCHAR", "summary": "VARCHAR", "Language": "VARCHAR"}
    databricks.add_table(TABLE, columns, [{"id": 1, "name": "A"}])
    rows = pd.DataFrame({"id": [1, 2], "summary": ["one", "two"], "word_count": [5, 6],
                         "language": ["en", "fr"]})
    counts = open_sink(f"databricks://{TABLE}?key=id", ["summary"], ENRICHED_FIELDS).write(rows)
    assert (counts["updated"], counts["created"], counts["failed"]) == (1, 1, 0)
    assert databricks.query(f"SELECT id, summary, Language FROM {TABLE} ORDER BY id") == [
        (1, "one", "en"), (2, "two", "fr")]
    # A field the template answers, or one the URI names, must have its column.
    for uri, fields in ((f"databricks://{TABLE}?key=id", ["summary", "word_count"]),
                        (f"databricks://{TABLE}?key=id&fields=summary,word_count", [])):
        counts = open_sink(uri, fields, ENRICHED_FIELDS).write(rows)
        assert counts["failed"] == 2 and "word_count" in counts["errors"][0]
        # Checked before a run pays for answers.
        with pytest.raises(UserInputError, match=r"has no field\(s\) word_count to write"):
            open_sink(uri, fields, ENRICHED_FIELDS).check()
    open_sink(f"databricks://{TABLE}?key=id", ["SUMMARY", "language"], ENRICHED_FIELDS).check()  # any case
    with pytest.raises(UserInputError, match=r"dev.crm.gone: cannot write: .*TABLE_OR_VIEW_NOT_FOUND"):
        open_sink("databricks://dev.crm.gone?key=id", ["summary"], ENRICHED_FIELDS).check()


def test_columns_that_cannot_be_read_are_not_guessed(databricks: DatabricksStandin) -> None:
    """A probe for the columns that fails (for a reason other than a missing table) checks nothing
    and leaves each MERGE to succeed or fail on its own."""
    databricks.add_table(TABLE, COLUMNS, companies(2))
    rows = pd.DataFrame({"id": [1, 2], "summary": ["one", "two"], "word_count": [5, 6]})
    sink = open_sink(f"databricks://{TABLE}?key=id", ["summary"], ENRICHED_FIELDS)
    databricks.fail_next(400, "INVALID_PARAMETER_VALUE", "not in this workspace")
    sink.check()
    databricks.fail_next(400, "INVALID_PARAMETER_VALUE", "not in this workspace")
    assert sink.write(rows)["updated"] == 2
    assert databricks.query(f"SELECT id, summary, word_count FROM {TABLE} ORDER BY id") == [
        (1, "one", 5), (2, "two", 6)]


def test_a_table_over_the_inline_limit_is_read_through_external_links(databricks: DatabricksStandin) -> None:
    """INLINE results stop at 25 MiB, and Databricks then fails the statement: a table of long texts
    could not be read at all. Such a result is read again by its external links, which are fetched
    without the workspace token (a cloud store refuses a second credential)."""
    databricks.add_table(TABLE, COLUMNS, companies(25))
    databricks.inline_byte_limit = 2_000  # stands for 25 MiB: 25 rows are over it, 3 are not
    read = open_source(f"databricks://{TABLE}").read()
    assert [r["id"] for r in read.records] == list(range(1, 26))
    assert (read.records[1]["active"], read.records[1]["revenue"]) == (True, 3.0)
    fetched = [r for r in databricks.requests if r["path"].startswith("/external/")]
    assert len(fetched) == 3 and not any(r["authorization"] for r in fetched), "3 chunks of 10, no token"
    databricks.external_links_expired = True
    with pytest.raises(UserInputError, match=r"result chunk 0 \(external link on 127\.0\.0\.1:\d+\): "
                       r"answered 403: .*Request has expired") as refused:
        open_source(f"databricks://{TABLE}").read()
    assert "/external/" not in str(refused.value), "the rest of a link is a credential"
    databricks.requests.clear()
    small = open_source(f"databricks://{TABLE}?where=id <= 3").read()
    assert len(small.records) == 3
    assert not any(r["path"].startswith("/external/") for r in databricks.requests)


def test_list_answers_go_to_array_columns_as_arrays(databricks: DatabricksStandin) -> None:
    """A list answer went as its JSON text, which Databricks does not assign to an ARRAY column: a
    table made for `tags: list[string]` refused every row. It goes as an array there, and as JSON
    text to a STRING column; an element of the wrong type fails its row, never writes NULL."""
    columns = {"id": "BIGINT", "tags": "VARCHAR[]", "scores": "BIGINT[]", "tags_text": "VARCHAR"}
    databricks.add_table(TABLE, columns, [{"id": 1, "tags": ["old"]}])
    rows = pd.DataFrame({"id": [1, 2], "tags": [["a", "b, c"], []], "scores": [[1, 2], None],
                         "tags_text": [["x"], ["y", "z"]]})
    for written in ((1, 1, 0), (2, 0, 0)):  # and again: the same rows, updated
        counts = open_sink(f"databricks://{TABLE}?key=id", ["tags", "scores", "tags_text"]).write(rows)
        assert (counts["updated"], counts["created"], counts["failed"]) == written, counts["errors"]
    assert databricks.query(f"SELECT id, tags, scores, tags_text FROM {TABLE} ORDER BY id") == [
        (1, ["a", "b, c"], [1, 2], '["x"]'), (2, [], None, '["y", "z"]')]
    assert open_source(f"databricks://{TABLE}").read().records[0]["tags"] == ["a", "b, c"]
    wrong = pd.DataFrame({"id": [1], "scores": [["one"]]})
    counts = open_sink(f"databricks://{TABLE}?key=id", ["scores"]).write(wrong)
    assert counts["failed"] == 1 and "key 1" in counts["errors"][0], counts
    assert databricks.query(f"SELECT scores FROM {TABLE} WHERE id = 1") == [([1, 2],)]


def test_a_missing_value_never_clears_a_stored_one(databricks: DatabricksStandin) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(3))
    # Typed in after the records were read, while the run waited for review.
    databricks.query(f"UPDATE {TABLE} SET summary = 'typed during review', word_count = 9 WHERE id = 1")
    databricks.query(f"UPDATE {TABLE} SET word_count = 30 WHERE id = 3")
    rows = pd.DataFrame({"id": [1, 2, 3, 4], "summary": [None, "", "three", None],
                         "word_count": [None, 0, None, 7], "active": [None, False, None, None]})
    for written in ((3, 1, 0), (4, 0, 0)):  # the second, identical write changes nothing
        counts = open_sink(f"databricks://{TABLE}?key=id", ["summary", "word_count", "active"]).write(rows)
        assert (counts["updated"], counts["created"], counts["failed"]) == written, counts["errors"]
        assert databricks.query(f"SELECT id, summary, word_count, active FROM {TABLE} ORDER BY id") == [
            (1, "typed during review", 9, False), (2, "", 0, False), (3, "three", 30, False),
            (4, None, 7, None)]


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


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_host_is_a_clear_error_within_the_retry_time(monkeypatch: pytest.MonkeyPatch) -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("DATABRICKS_HOST", host)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    monkeypatch.setenv("DATABRICKS_WAREHOUSE_ID", "wh-standin")
    monkeypatch.setenv("AUGMENT_DATABRICKS_RETRY_SECONDS", "1")
    reading, writing = open_source(f"databricks://{TABLE}"), open_sink(f"databricks://{TABLE}", ["summary"])
    uploading = open_sink("databricks:///Volumes/dev/crm/exports/x.parquet", [])
    frame = pd.DataFrame({"id": [1], "summary": ["x"]})
    unreachable = rf"cannot reach Databricks at {re.escape(host)} after retrying for 1 s \(ConnectionError\)"
    for attempt in (reading.read, lambda: writing.write(frame), lambda: uploading.write(frame)):
        started = time.monotonic()
        with pytest.raises(UserInputError, match=unreachable):
            attempt()
        # The SDK's own 300 s, twice (its Config() probe, then the call), would look like a hang.
        assert time.monotonic() - started < 15


def test_a_host_that_stops_answering_mid_write_keeps_the_counts(databricks: DatabricksStandin,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUGMENT_DATABRICKS_RETRY_SECONDS", "1")
    databricks.add_table(TABLE, COLUMNS, companies(3))
    fields = ["summary", "word_count", "reading_time_min", "language", "quality_score"]
    frame = pd.DataFrame({"id": range(1, 101), **{f: [None] * 100 for f in fields}}).assign(summary="s")
    # 6 parameters a row: 42 rows per MERGE. The probe for the columns and the first MERGE take 3
    # requests each (run, 2 polls), then 503s.
    databricks.fail_next(503, "TEMPORARILY_UNAVAILABLE", "Workspace is busy", times=50, after=6)
    counts = open_sink(f"databricks://{TABLE}?key=id", fields).write(frame)
    assert (counts["updated"], counts["created"], counts["failed"]) == (3, 39, 58)
    assert re.match(r"keys 43\.\.100 \(58 rows\): not written, cannot reach Databricks at .* "
                    r"\(TemporarilyUnavailable: Workspace is busy\)", counts["errors"][0]), counts["errors"]
    assert databricks.query(f"SELECT count(*) FROM {TABLE}") == [(42,)]


def test_merges_stay_within_the_parameter_limits(databricks: DatabricksStandin) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(100))
    fields = ["summary", "word_count", "reading_time_min", "language", "quality_score"]
    frame = pd.DataFrame({"id": range(1, 301), "summary": [f"s{i}" for i in range(300)],
                          "word_count": range(300), "reading_time_min": [0.5] * 300, "language": "en",
                          "quality_score": [0.9] * 300})
    counts = open_sink(f"databricks://{TABLE}?key=id", fields).write(frame)
    assert (counts["updated"], counts["created"], counts["failed"]) == (100, 200, 0), counts["errors"]
    # After the probe for the columns (no parameters): 42 rows of 6 parameters, not 200.
    assert databricks.statement_parameters == [0] + [252] * 7 + [36]
    assert databricks.query(f"SELECT count(*), sum(word_count) FROM {TABLE} WHERE language = 'en'") == [
        (300, sum(range(300)))]
    # Long values: fewer rows per statement, so that no statement carries over 1 MB of values.
    long = pd.DataFrame({"id": [1, 2, 3], "summary": ["x" * 400_000, "y" * 400_000, "z" * 400_000]})
    counts = open_sink(f"databricks://{TABLE}?key=id", ["summary"]).write(long)
    assert (counts["updated"], counts["failed"]) == (3, 0)
    assert databricks.statement_parameters[9:] == [0, 4, 2]
    # Beyond the limit, the stand-in answers as Databricks does.
    runner = StatementRunner(load_settings(DatabricksSettings, None), None)
    markers = [StatementParameterListItem(name=f"p{i}", type="INT", value="1") for i in range(256)]
    with pytest.raises(UserInputError, match="BadRequest: Parameterized query has too many parameters: 256"):
        runner.run("SELECT " + " + ".join(f":p{i}" for i in range(256)), markers)


def test_the_last_record_of_a_key_is_written_and_earlier_ones_fail(databricks: DatabricksStandin) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(3))
    frame = pd.DataFrame({"id": [2, 2, 4, 3, 4, 4], "summary": ["a", "b", "c", "d", "e", "f"]})
    counts = open_sink(f"databricks://{TABLE}?key=id", ["summary"]).write(frame)
    assert (counts["updated"], counts["created"], counts["failed"]) == (2, 1, 3)
    assert [e.split(";")[0] for e in counts["errors"]] == ["key 2: 2 records have this key",
                                                            "key 4: 3 records have this key"]
    assert databricks.query(f"SELECT id, summary FROM {TABLE} ORDER BY id") == [
        (1, None), (2, "b"), (3, "d"), (4, "f")]
    # The MERGE it avoids: Delta refuses two source rows for one target row (so does the stand-in).
    runner = StatementRunner(load_settings(DatabricksSettings, None), None)
    twice = (f"MERGE INTO {TABLE} AS target USING (SELECT 1 AS id, 'x' AS summary UNION ALL SELECT 1, 'y') "
             "AS source ON target.id = source.id WHEN MATCHED THEN UPDATE SET summary = source.summary")
    with pytest.raises(UserInputError, match=r"FAILED: \[DELTA_MULTIPLE_SOURCE_ROW_MATCHING_TARGET_ROW_IN_"):
        runner.run(twice)


def test_a_truncated_result_is_an_error_not_part_of_the_table(databricks: DatabricksStandin) -> None:
    databricks.add_table(TABLE, COLUMNS, companies(12))
    databricks.result_row_limit = 5
    with pytest.raises(UserInputError, match=rf"^databricks:{TABLE}: Databricks truncated .*5 rows kept"):
        open_source(f"databricks://{TABLE}").read()


def test_decimals_keep_every_digit_and_keys_merge_back_onto_their_rows(databricks: DatabricksStandin) -> None:
    big, huge = 2**53 + 1, 10**20  # a float would make 2**53 + 1 into 2**53; 10**20 is past BIGINT
    columns = {"id": "DECIMAL(38,0)", "price": "DECIMAL(10,2)", "balance": "DECIMAL(38,10)",
               "seats": "INTEGER", "summary": "VARCHAR"}
    databricks.add_table("dev.crm.accounts", columns, [
        {"id": big, "price": "12.34", "balance": "12345678901234567.0123456789", "seats": 3},
        {"id": huge, "price": "0.10", "balance": None, "seats": None}])
    databricks.type_names = {"price": None, "seats": "INT_OF_THE_FUTURE"}  # read from type_text instead
    read = open_source("databricks://dev.crm.accounts?key=id").read()
    first, second = read.records
    assert (first["id"], first[STORE_KEY], second["id"]) == (big, big, huge)
    assert (first["price"], first["balance"], first["seats"]) == (12.34, "12345678901234567.0123456789", 3)
    assert type(first["seats"]) is int and (second["price"], second["balance"]) == (0.1, None)
    frame = pd.DataFrame(read.records).assign(summary=["one", "two"])
    counts = open_sink("databricks://dev.crm.accounts?key=id", ["summary"]).write(frame)
    assert (counts["updated"], counts["created"], counts["failed"]) == (2, 0, 0), counts["errors"]
    assert databricks.query("SELECT id, summary FROM dev.crm.accounts ORDER BY id") == [
        (Decimal(big), "one"), (Decimal(huge), "two")]


@pytest.mark.parametrize(("column", "text", "value"), [
    ({"type_text": "BIGINT"}, "9007199254740993", 9007199254740993),
    ({"type_text": "DECIMAL(10,2)"}, "12.30", 12.3),
    ({"type_text": "decimal(20)"}, "12345678901234567890", 12345678901234567890),
    ({"type_text": "DECIMAL"}, "7", 7),
    ({"type_name": "DECIMAL", "type_text": "DECIMAL(30,4)"}, "12345678901234567890.1234",
     "12345678901234567890.1234"),
    ({"type_text": "ARRAY<INT>"}, "[1,2]", [1, 2]),
    ({"type_text": "TIMESTAMP_NTZ"}, "2024-01-02T03:04:05", "2024-01-02T03:04:05"),
    ({}, "x", "x"),
])
def test_type_text_gives_the_type_when_type_name_does_not(column: dict, text: str, value: object) -> None:
    converted = convert(text, column_type(ColumnInfo.from_dict({"name": "c", **column})))
    assert converted == value and type(converted) is type(value)


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
