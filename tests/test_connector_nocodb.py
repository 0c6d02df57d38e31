"""NocoDB connector against a stand-in that follows the NocoDB v2 REST API documentation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from augment_it.connections import STORE_KEY, StoreURI
from augment_it.enrichers import ENRICHED_FIELDS
from augment_it.errors import UserInputError
from augment_it.records import REASON
from augment_it.review_ledger import fingerprint
from augment_it.sinks import FieldChoice, open_sink
from augment_it.sinks.nocodb import NocoDBSink
from augment_it.sources import open_source
from augment_it.sources.nocodb import NocoDBSettings, NocoDBTarget
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
    offsets = [int(e["query"]["offset"]) for e in nocodb.log if e["path"].endswith("/records")]
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


def test_a_column_named_for_people_is_written_by_its_title(nocodb: NocoDBStandin) -> None:
    """An output field may now be named `AI Summary`, as a NocoDB column is titled."""
    table = nocodb.add_table("pBase", "Companies", {"name": "SingleLineText", "AI Summary": "LongText",
                                                    "Score (1-5)": "Number"}, companies(3))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    records["AI Summary"], records["Score (1-5)"] = "written", 4
    counts = open_sink(f"nocodb://{table.id}", ["AI Summary", "Score (1-5)"]).write(records)
    assert (counts["updated"], counts["created"], counts["failed"]) == (3, 0, 0)
    assert [(row["AI Summary"], row["Score (1-5)"]) for row in table.rows.values()] == [("written", 4)] * 3
    chosen = open_sink(f"nocodb://{table.id}?fields=AI Summary", ["AI Summary", "Score (1-5)"])
    records["AI Summary"], records["Score (1-5)"] = "again", 5
    assert chosen.write(records)["updated"] == 3
    assert [(row["AI Summary"], row["Score (1-5)"]) for row in table.rows.values()] == [("again", 4)] * 3


def test_a_bad_value_fails_only_its_row(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(4))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    records["score"] = pd.Series([1, 2, "three", 4], dtype=object)
    counts = open_sink(f"nocodb://{table.id}", ["score"]).write(records)
    assert (counts["updated"], counts["failed"]) == (3, 1)
    assert "ERR_INVALID_VALUE_FOR_FIELD" in counts["errors"][0] or "Invalid value" in counts["errors"][0]
    assert [row["score"] for row in table.rows.values()] == [1, 2, None, 4]


def sink(server: NocoDBStandin, table_id: str, fields: list[str], **settings: float) -> NocoDBSink:
    """A sink with settings the environment does not carry (timeout, retries, batch size)."""
    values = NocoDBSettings(url=server.url, api_token=TOKEN, **settings)
    return NocoDBSink(NocoDBTarget(None, table_id, values, StoreURI.parse(f"nocodb://{table_id}")),
                      FieldChoice(fields, []))


def test_fields_the_table_has_no_column_for_are_refused_before_writing(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", {**COLUMNS, "total": "Formula"}, companies(3))
    # NocoDB itself drops an unknown key and answers 200: nothing would tell the run it was lost.
    answer = httpx.post(f"{nocodb.url}/api/v2/tables/{table.id}/records", headers={"xc-token": TOKEN},
                        json=[{"name": "X", "nope": 1}])
    assert answer.status_code == 200 and "nope" not in table.rows[answer.json()[0]["Id"]]
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    writes = len([e for e in nocodb.log if e["method"] in ("POST", "PATCH")])
    refused = r"nocodb:m\w+: the table has no writable column\(s\) nope, total"
    with pytest.raises(UserInputError, match=refused):
        open_sink(f"nocodb://{table.id}", ["summary", "nope", "total"]).write(records.assign(nope=1, total=2))
    assert len([e for e in nocodb.log if e["method"] in ("POST", "PATCH")]) == writes, "nothing was written"
    # Columns may also be named by their database name, as NocoDB maps them.
    counts = open_sink(f"nocodb://{table.id}", ["quality_score"]).write(records.assign(quality_score=5))
    assert counts["updated"] == 4 and {row["quality_score"] for row in table.rows.values()} == {5}


def test_without_access_to_the_table_meta_the_write_warns_and_goes_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with NocoDBStandin(token=TOKEN, meta_forbidden=True) as server:
        monkeypatch.setenv("NOCODB_API_TOKEN", TOKEN)
        monkeypatch.setenv("NOCODB_URL", server.url)
        table = server.add_table("pBase", "Companies", COLUMNS, companies(2))
        records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
        with pytest.warns(UserWarning, match=r"the table's columns could not be read"):
            counts = open_sink(f"nocodb://{table.id}", ["summary"]).write(records.assign(summary="s"))
        assert counts["updated"] == 2 and {row["summary"] for row in table.rows.values()} == {"s"}


def test_an_insert_is_split_only_when_refused_as_a_whole(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS)
    rows = pd.DataFrame({"name": ["a", "b", "c", "d"], "score": pd.Series([1, "two", 3, 4], dtype=object)})
    counts = open_sink(f"nocodb://{table.id}", ["name", "score"]).write(rows)
    assert (counts["created"], counts["failed"]) == (3, 1), "422: nothing was inserted, so rows go one by one"
    assert sorted(row["name"] for row in table.rows.values()) == ["a", "c", "d"]
    posts = len([e for e in nocodb.log if e["method"] == "POST"])
    nocodb.fail_next(500, {"error": "ERR_DATABASE_OP_FAILED", "message": "There was an error"}, method="POST")
    counts = open_sink(f"nocodb://{table.id}", ["name"]).write(rows[["name"]])
    assert (counts["created"], counts["failed"]) == (0, 4) and "ERR_DATABASE_OP_FAILED" in counts["errors"][0]
    nocodb.fail_next(429, {"msg": "Too many requests"}, {"Retry-After": "0"}, times=2, method="POST")
    with pytest.raises(UserInputError, match="still answered HTTP 429 Too many requests after 1 retries"):
        sink(nocodb, table.id, ["name"], max_retries=1).write(rows[["name"]])
    assert len([e for e in nocodb.log if e["method"] == "POST"]) == posts + 3, "never re-sent row by row"
    nocodb.fail_next(201, [{"Id": 90}, {"Id": 91}, {"Id": 92}, {"Id": 93}], method="POST")  # 2xx: success
    assert open_sink(f"nocodb://{table.id}", ["name"]).write(rows[["name"]])["created"] == 4


def test_a_host_that_stops_answering_stops_the_write(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(4))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records).assign(summary="s")
    rows = pd.concat([records, pd.DataFrame({"summary": ["n1", "n2", "n3"]})], ignore_index=True)
    writer = sink(nocodb, table.id, ["summary"], timeout_seconds=0.3, max_retries=0, batch_size=2)
    nocodb.delay_next(1.0, "PATCH", after=1)  # the first PATCH is answered, the second too late
    counts = writer.write(rows)
    assert (counts["updated"], counts["created"], counts["failed"]) == (2, 0, 5)
    unanswered = rf"cannot reach NocoDB at {re.escape(nocodb.url)}: \w+"
    assert re.fullmatch(rf"5 row\(s\): not written, {unanswered}", counts["errors"][0]), counts["errors"]
    writes = [(e["method"], e["rows"]) for e in nocodb.log if e["method"] in ("PATCH", "POST")]
    assert writes == [("PATCH", 2), ("PATCH", 2)], "no request after the one without an answer"
    # A POST without an answer may have inserted its rows: it is not sent again either.
    nocodb.delay_next(1.0, "POST", after=1)
    counts = writer.write(pd.DataFrame({"name": ["a", "b", "c", "d", "e"]}).assign(summary="s"))
    assert (counts["created"], counts["failed"]) == (2, 3) and "may have been created" in counts["errors"][0]
    assert [e["rows"] for e in nocodb.log if e["method"] == "POST"] == [2, 2]
    # Nothing written yet: the store cannot be used, one error for the whole write.
    nocodb.delay_next(1.0, "PATCH")
    with pytest.raises(UserInputError, match=rf"^{unanswered}$"):
        writer.write(rows)
    assert [e["method"] for e in nocodb.log if e["method"] in ("PATCH", "POST")][-1] == "PATCH"


def test_a_rate_limit_that_outlasts_the_retries_stops_the_write(nocodb: NocoDBStandin) -> None:
    """Each later batch would wait the retries out again: at 25 rows a batch, hours for a big table."""
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(4))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records).assign(summary="s")
    rows = pd.concat([records, pd.DataFrame({"summary": ["n1", "n2", "n3"]})], ignore_index=True)
    nocodb.fail_next(429, {"msg": "Too many requests"}, {"Retry-After": "0"}, times=9, method="POST")
    counts = sink(nocodb, table.id, ["summary"], max_retries=2, batch_size=2).write(rows)
    assert (counts["updated"], counts["created"], counts["failed"]) == (4, 0, 3)
    assert re.fullmatch(rf"3 row\(s\): not written, NocoDB at {re.escape(nocodb.url)} still answered "
                        r"HTTP 429 Too many requests after 2 retries", counts["errors"][0]), counts["errors"]
    posts = [e["status"] for e in nocodb.log if e["method"] == "POST"]
    assert posts == [429, 429, 429], "the first insert's retries, and no batch after it"


def test_a_missing_value_never_clears_a_stored_one(nocodb: NocoDBStandin) -> None:
    table = nocodb.add_table("pBase", "Companies", COLUMNS, companies(4))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    table.rows[1].update(summary="typed during review", score=9)  # after the read, before the write
    table.rows[3]["score"] = 3
    records["summary"] = [None, "", "new", float("nan")]
    records["score"] = pd.Series([None, 0, None, 4], dtype=object)
    for _ in range(2):  # the second, identical write changes nothing
        counts = open_sink(f"nocodb://{table.id}", ["summary", "score"]).write(records)
        assert (counts["updated"], counts["created"], counts["failed"]) == (4, 0, 0)
        assert [(row["summary"], row["score"]) for row in table.rows.values()] == [
            ("typed during review", 9), ("", 0), ("new", 3), (None, 4)]


def test_enrichers_go_only_to_columns_the_table_has(nocodb: NocoDBStandin) -> None:
    """A table made for the answers, without a column per enricher, refused the whole write."""
    table = nocodb.add_table("pBase", "Companies", {"name": "SingleLineText", "summary": "LongText",
                                                    "language": "SingleLineText"}, companies(2))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    records = records.assign(summary=["one", "two"], word_count=[5, 6], language=["en", "fr"])
    counts = open_sink(f"nocodb://{table.id}", ["summary"], ENRICHED_FIELDS).write(records)
    assert (counts["updated"], counts["failed"]) == (2, 0)
    assert [(row["summary"], row["language"]) for row in table.rows.values()] == [
        ("one", "en"), ("two", "fr")]
    with pytest.raises(UserInputError, match=r"no writable column\(s\) word_count"):
        open_sink(f"nocodb://{table.id}?fields=summary,word_count", [], ENRICHED_FIELDS).write(records)
    # Checked before a run pays for answers: every answer needs its column, enrichers do not.
    open_sink(f"nocodb://{table.id}", ["summary"], ENRICHED_FIELDS).check()
    with pytest.raises(UserInputError, match=r"has no field\(s\) industry to write"):
        open_sink(f"nocodb://{table.id}", ["summary", "industry"], ENRICHED_FIELDS).check()


def test_a_list_goes_to_a_multi_select_as_its_options_and_to_text_as_its_json(nocodb: NocoDBStandin) -> None:
    """A list answer went everywhere as its JSON text: a MultiSelect cell got the options
    '["robots"' and '"retail"]'. The v2 API takes a MultiSelect's options joined by commas."""
    table = nocodb.add_table("pBase", "Companies", {**COLUMNS, "tags": "MultiSelect"}, companies(2))
    records = pd.DataFrame(open_source(f"nocodb://{table.id}").read().records)
    records["tags"] = [["robots", "retail"], []]
    records["summary"] = [["a", "b"], None]
    counts = open_sink(f"nocodb://{table.id}", ["tags", "summary"]).write(records)
    assert (counts["updated"], counts["failed"]) == (2, 0)
    assert [(row["tags"], row["summary"]) for row in table.rows.values()] == [
        ("robots,retail", '["a", "b"]'), ("", None)]


def test_a_multi_select_is_read_as_a_list_of_its_options(nocodb: NocoDBStandin) -> None:
    """The v2 API gives a MultiSelect as its options joined by commas: a prompt's
    `{{ tags | join(", ") }}` joined its characters. It is read as the list Airtable would give,
    and written back as the text it was."""
    rows = [{"name": "A", "tags": "robots,retail"}, {"name": "B", "tags": None},
            {"name": "C", "tags": "solo"}]
    table = nocodb.add_table("pBase", "Companies", {**COLUMNS, "tags": "MultiSelect"}, rows)
    records = open_source(f"nocodb://{table.id}").read().records
    assert [r["tags"] for r in records] == [["robots", "retail"], None, ["solo"]]
    counts = open_sink(f"nocodb://{table.id}", ["tags"]).write(pd.DataFrame(records))
    assert (counts["updated"], counts["failed"]) == (3, 0)
    assert [row["tags"] for row in table.rows.values()] == ["robots,retail", None, "solo"]


@pytest.mark.parametrize("meta_access", [True, False])
def test_a_blank_row_is_quarantined_and_nocodbs_own_fields_are_left_out(
        meta_access: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row nobody filled in still has its Id and times: it was sent to the model and paid for.
    And a write-back changes `UpdatedAt`: every record then read as changed on the next run, so a
    reviewer was asked about each one again."""
    with NocoDBStandin(token=TOKEN, meta_forbidden=not meta_access) as server:
        monkeypatch.setenv("NOCODB_API_TOKEN", TOKEN)
        monkeypatch.setenv("NOCODB_URL", server.url)
        table = server.add_table("pBase", "Companies", COLUMNS, [*companies(2), {}])
        first = open_source(f"nocodb://{table.id}").read()
        assert [r["name"] for r in first.records] == ["Company 0", "Company 1"]
        [blank] = first.rejects
        assert blank[REASON] == f"nocodb:{table.id}#3: no field holds a value"
        assert not {"CreatedAt", "UpdatedAt"} & set(first.records[0])
        for row in table.rows.values():
            row["UpdatedAt"] = "2031-01-01 00:00:00+00:00"  # as after a write-back
        again = open_source(f"nocodb://{table.id}").read()
        assert [fingerprint(r) for r in again.records] == [fingerprint(r) for r in first.records]


def test_rows_read_from_another_table_are_created_not_written_onto_its_keys(nocodb: NocoDBStandin) -> None:
    source = nocodb.add_table("pBase", "Companies", COLUMNS, companies(3))
    other = nocodb.add_table("pBase", "Archive", COLUMNS, [{"name": f"Kept {i}"} for i in range(3)])
    records = pd.DataFrame(open_source("nocodb://pBase/Companies").read().records)
    records["summary"] = "copied"
    counts = open_sink(f"nocodb://{other.id}", ["name", "summary"]).write(records)
    assert (counts["created"], counts["updated"], counts["failed"]) == (3, 0, 0)
    assert [(row["Id"], row["name"], row["summary"]) for row in other.rows.values()] == [
        (1, "Kept 0", None), (2, "Kept 1", None), (3, "Kept 2", None),
        (4, "Company 0", "copied"), (5, "Company 1", "copied"), (6, "Company 2", "copied")]
    assert {row["summary"] for row in source.rows.values()} == {None}, "the source is untouched"
    # The same table, read through base and title and written through its id: updated in place.
    same = open_sink(f"nocodb://{source.id}", ["summary"]).write(records)
    assert (same["updated"], same["created"]) == (3, 0)
    assert {row["summary"] for row in source.rows.values()} == {"copied"}


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
