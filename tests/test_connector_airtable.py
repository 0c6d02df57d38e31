"""Airtable connector against a stand-in that follows the Airtable Web API documentation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from augment_it.connections import STORE_KEY, StoreURI
from augment_it.enrichers import ENRICHED_FIELDS
from augment_it.errors import UserInputError
from augment_it.sinks import FieldChoice, open_sink
from augment_it.sinks.airtable import AirtableSink
from augment_it.sources import open_source
from augment_it.sources.airtable import AirtableSettings, AirtableSource, AirtableTarget
from tests.standins.airtable import AirtableStandin

TOKEN = "patStandin.0123456789abcdef"
FIELDS = {"name": "singleLineText", "description": "multilineText", "summary": "multilineText",
          "word_count": "number", "reading_time_min": "number", "language": "singleSelect",
          "quality_score": "number", "score": "number"}


@pytest.fixture
def airtable(monkeypatch: pytest.MonkeyPatch) -> Iterator[AirtableStandin]:
    with AirtableStandin(token=TOKEN, retry_after=1) as server:
        monkeypatch.setenv("AIRTABLE_API_KEY", TOKEN)
        monkeypatch.setenv("AIRTABLE_ENDPOINT_URL", server.url)
        yield server


def companies(n: int) -> list[dict]:
    return [{"name": f"Company {i}", "description": f"Company {i} makes things number {i} for people."}
            for i in range(n)]


def test_reads_every_page_with_view_and_formula(airtable: AirtableStandin) -> None:
    table = airtable.add_table("appBase", "Companies", FIELDS, companies(230))
    table.views["Odd"] = "OR({name}='Company 1', {name}='Company 3')"
    read = open_source("airtable://appBase/Companies").read()
    assert len(read.records) == 230 and len({r[STORE_KEY] for r in read.records}) == 230
    pages = [e for e in airtable.log if e["method"] == "GET" and "/meta/" not in e["path"]]
    assert len(pages) == 3, "100 records per page, following `offset`"
    filtered = open_source(f"airtable://appBase/{table.id}?view=Odd&formula=NOT({{name}}='Company 1')").read()
    assert [r["name"] for r in filtered.records] == ["Company 3"]


def test_write_back_batches_of_ten_paced_under_five_per_second(airtable: AirtableStandin) -> None:
    table = airtable.add_table("appBase", "Companies", FIELDS, companies(45))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records)
    records["summary"] = "a summary"
    records["score"] = 7
    counts = open_sink("airtable://appBase/Companies", ["summary", "score"]).write(records)
    assert counts["updated"] == 45 and counts["failed"] == 0
    patches = [e for e in airtable.log if e["method"] == "PATCH"]
    assert [e["records"] for e in patches] == [10, 10, 10, 10, 5]
    assert airtable.rate_limited == 0 and airtable.max_requests_in_any_second("appBase") <= 5
    written = [(r["fields"]["summary"], r["fields"]["score"]) for r in table.records.values()]
    assert set(written) == {("a summary", 7)}


def test_rate_limit_is_waited_out_with_retry_after(airtable: AirtableStandin) -> None:
    table = airtable.add_table("appBase", "Companies", FIELDS, companies(12))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records)
    records["summary"] = "after 429"
    airtable.fail_next(429, None, {"Retry-After": "1"}, times=2)
    counts = open_sink("airtable://appBase/Companies", ["summary"]).write(records)
    assert counts == {**counts, "updated": 12, "failed": 0}
    assert [e["status"] for e in airtable.log if e["method"] == "PATCH"][:3] == [429, 429, 200]
    assert {r["fields"]["summary"] for r in table.records.values()} == {"after 429"}


def test_one_bad_value_fails_only_its_record(airtable: AirtableStandin) -> None:
    airtable.add_table("appBase", "Companies", FIELDS, companies(5))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records)
    records["score"] = ["1", "2", "three", "4", "5"]  # typecast turns "1" into 1 but not "three"
    counts = open_sink("airtable://appBase/Companies", ["score"]).write(records)
    assert (counts["updated"], counts["failed"]) == (4, 1)
    assert "INVALID_VALUE_FOR_COLUMN" in counts["errors"][0]


def test_an_unknown_field_stops_the_write_without_trying_each_record(airtable: AirtableStandin) -> None:
    airtable.add_table("appBase", "Companies", FIELDS, companies(5))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records)
    before = len(airtable.log)
    with pytest.raises(UserInputError, match=r'airtable:appBase/Companies: .*422 UNKNOWN_FIELD_NAME: '
                                              r'Unknown field name: "nope"'):
        open_sink("airtable://appBase/Companies", ["nope"]).write(records.assign(nope="x"))
    assert len(airtable.log) == before + 1, "one refused request, not one more per record"


def test_records_without_a_key_value_are_counted_once(airtable: AirtableStandin) -> None:
    airtable.add_table("appBase", "Companies", FIELDS, companies(1))
    rows = pd.DataFrame({"name": ["Company 0", "Company 5", None], "summary": ["a", "b", "c"]})
    airtable.fail_next(422, {"type": "INVALID_VALUE_FOR_COLUMN", "message": "refused"})
    counts = open_sink("airtable://appBase/Companies?key=name", ["summary"]).write(rows)
    assert (counts["updated"], counts["created"], counts["failed"]) == (1, 1, 1)
    assert sum("no value in key field 'name'" in e for e in counts["errors"]) == 1
    # A refusal that is not split: the keyless record is still counted once, apart from the batch.
    airtable.fail_next(422, {"type": "INVALID_VALUE_FOR_COLUMN", "message": "refused"}, times=3)
    counts = open_sink("airtable://appBase/Companies?key=name", ["summary"]).write(rows)
    assert (counts["updated"], counts["created"], counts["failed"]) == (0, 0, 3)
    upserts = [e for e in airtable.log if e["method"] == "PATCH"]
    assert [e["records"] for e in upserts[-3:]] == [2, 1, 1], "the keyless record is never sent"


def target_with(server: AirtableStandin, **settings: float) -> AirtableTarget:
    """The target with settings the environment does not carry (timeout, retries)."""
    values = AirtableSettings(api_key=TOKEN, endpoint_url=server.url, **settings)
    return AirtableTarget("appBase", "Companies", values, StoreURI.parse("airtable://appBase/Companies"))


def test_a_create_that_times_out_is_not_sent_again(airtable: AirtableStandin) -> None:
    table = airtable.add_table("appBase", "Companies", FIELDS)
    target = target_with(airtable, timeout_seconds=0.5)
    airtable.delay_next(1.5, "POST")
    unanswered = r"cannot reach Airtable at .*: ReadTimeout \(the records may have been created: not sent"
    with pytest.raises(UserInputError, match=unanswered):
        AirtableSink(target, FieldChoice(["name"], []), None).write(pd.DataFrame({"name": ["A", "B", "C"]}))
    assert [e["method"] for e in airtable.log] == ["POST"], "a POST is never repeated after it was sent"
    assert sorted(r["fields"]["name"] for r in table.records.values()) == ["A", "B", "C"]
    airtable.delay_next(1.5, "GET")  # a read that timed out is safe to repeat
    assert len(AirtableSource(target).read().records) == 3
    assert [e["method"] for e in airtable.log[1:] if "/meta/" not in e["path"]] == ["GET", "GET"]


def test_a_host_that_stops_answering_stops_the_write(airtable: AirtableStandin) -> None:
    airtable.add_table("appBase", "Companies", FIELDS, companies(25))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records).assign(summary="s")
    target = target_with(airtable, timeout_seconds=0.3, max_retries=0)
    writer = AirtableSink(target, FieldChoice(["summary"], []), None)
    airtable.delay_next(1.0, "PATCH", after=1)  # the first PATCH is answered, the second too late
    counts = writer.write(records)
    assert (counts["updated"], counts["created"], counts["failed"]) == (10, 0, 15)
    unanswered = rf"cannot reach Airtable at {re.escape(airtable.url)}: \w+"
    assert re.fullmatch(rf"15 record\(s\): not written, {unanswered}", counts["errors"][0]), counts["errors"]
    assert [e["records"] for e in airtable.log if e["method"] == "PATCH"] == [10, 10], "none after it"
    airtable.delay_next(1.0, "PATCH")  # nothing written yet: one error for the whole write
    with pytest.raises(UserInputError, match=rf"^{unanswered}$"):
        writer.write(records)
    assert [e["records"] for e in airtable.log if e["method"] == "PATCH"] == [10, 10, 10]


def test_a_rate_limit_that_outlasts_the_retries_stops_the_write(airtable: AirtableStandin) -> None:
    """Each later request would wait the retries out again (up to 30 s each): hours for a big table."""
    airtable.add_table("appBase", "Companies", FIELDS, companies(25))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records).assign(summary="s")
    writer = AirtableSink(target_with(airtable, max_retries=2), FieldChoice(["summary"], []), None)
    error = {"type": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded"}
    airtable.fail_next(429, error, {"Retry-After": "0"}, times=3, after=1)  # after the first PATCH
    counts = writer.write(records)
    assert (counts["updated"], counts["created"], counts["failed"]) == (10, 0, 15)
    assert counts["errors"][0].startswith(f"15 record(s): not written, Airtable at {airtable.url} still "
                                          "answered HTTP 429"), counts["errors"]
    assert counts["errors"][0].endswith("after 2 retries"), counts["errors"]
    patches = [e["status"] for e in airtable.log if e["method"] == "PATCH"]
    assert patches == [200, 429, 429, 429], "no request after the one that stayed rate limited"


def test_a_missing_value_never_clears_a_stored_one(airtable: AirtableStandin) -> None:
    table = airtable.add_table("appBase", "Companies", FIELDS, companies(4))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records)
    first, _, third, _ = table.records.values()
    first["fields"].update(summary="typed during review", score=9)  # after the read, before the write
    third["fields"]["score"] = 3
    records["summary"] = [None, "", "new", float("nan")]
    records["score"] = pd.Series([None, 0, None, 4], dtype=object)
    for _ in range(2):  # the second, identical write changes nothing
        counts = open_sink("airtable://appBase/Companies", ["summary", "score"]).write(records)
        assert (counts["updated"], counts["created"], counts["failed"]) == (4, 0, 0)
        assert [(r["fields"].get("summary"), r["fields"].get("score")) for r in table.records.values()] == [
            ("typed during review", 9), ("", 0), ("new", 3), (None, 4)]
    # Upserted on a key, a missing value keeps the stored one too; a new record leaves the cell empty.
    rows = pd.DataFrame({"name": ["Company 0", "Company 9"], "summary": [None, None], "score": [None, 5]})
    counts = open_sink("airtable://appBase/Companies?key=name", ["summary", "score"]).write(rows)
    assert (counts["updated"], counts["created"]) == (1, 1)
    assert [(r["fields"].get("summary"), r["fields"].get("score")) for r in table.records.values()][::4] == [
        ("typed during review", 9), (None, 5)]


def test_records_from_another_table_or_base_are_created_not_written_onto_their_ids(
        airtable: AirtableStandin) -> None:
    source = airtable.add_table("appBase", "Companies", FIELDS, companies(3))
    archive = airtable.add_table("appBase", "Archive", FIELDS)
    elsewhere = airtable.add_table("appOther", "Companies", FIELDS)
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records)
    records["summary"] = "copied"
    for uri, table in (("airtable://appBase/Archive", archive), ("airtable://appOther/Companies", elsewhere)):
        counts = open_sink(uri, ["name", "summary"]).write(records)
        assert (counts["created"], counts["updated"], counts["failed"]) == (3, 0, 0)
        assert not set(table.records) & set(source.records), "new records, not the source's ids"
        assert sorted(r["fields"]["name"] for r in table.records.values()) == sorted(records["name"])
    assert all("summary" not in r["fields"] for r in source.records.values()), "the source is untouched"
    again = records.assign(summary="again")
    upserted = open_sink("airtable://appBase/Archive?key=name", ["summary"]).write(again)
    assert (upserted["updated"], upserted["created"]) == (3, 0)
    # The same table, read through its name and written through its id: updated in place.
    same = open_sink(f"airtable://appBase/{source.id}", ["summary"]).write(records)
    assert (same["updated"], same["created"]) == (3, 0)
    assert {r["fields"]["summary"] for r in source.records.values()} == {"copied"}


def test_upsert_on_a_key_field_when_records_have_no_airtable_id(airtable: AirtableStandin) -> None:
    table = airtable.add_table("appBase", "Companies", FIELDS, companies(2))
    rows = pd.DataFrame({"name": ["Company 0", "Company 9"], "summary": ["updated", "new"]})
    for _ in range(2):
        counts = open_sink("airtable://appBase/Companies?key=name", ["summary"]).write(rows)
    assert (counts["updated"], counts["created"]) == (2, 0)
    assert sorted((r["fields"]["name"], r["fields"].get("summary")) for r in table.records.values()) == [
        ("Company 0", "updated"), ("Company 1", None), ("Company 9", "new")]


def test_a_list_goes_to_a_multi_select_as_an_array_and_to_text_as_its_json(airtable: AirtableStandin) -> None:
    """A list answer was sent as its JSON text everywhere: a multi-select got one option named
    '["robots", "retail"]'. The base's schema says which fields take an array."""
    fields = {"name": "singleLineText", "tags": "multipleSelects", "notes": "multilineText"}
    table = airtable.add_table("appBase", "Companies", fields, [{"name": "Acme"}, {"name": "Borealis"}])
    rows = pd.DataFrame({"name": ["Acme", "Borealis"], "tags": [["robots", "retail"], ["food"]],
                         "notes": [["a", "b"], None]})
    counts = open_sink("airtable://appBase/Companies?key=name", ["tags", "notes"]).write(rows)
    assert (counts["updated"], counts["failed"]) == (2, 0)
    stored = {r["fields"]["name"]: r["fields"] for r in table.records.values()}
    assert stored["Acme"]["tags"] == ["robots", "retail"] and stored["Borealis"]["tags"] == ["food"]
    assert stored["Acme"]["notes"] == '["a", "b"]'
    assert table.select_options["tags"] == {"robots", "retail", "food"}
    # Without a list to write the schema is not asked for.
    before = len(airtable.log)
    open_sink("airtable://appBase/Companies?key=name", ["notes"]).write(rows.assign(notes=["x", "y"]))
    assert not any("/meta/" in entry["path"] for entry in airtable.log[before:])


@pytest.mark.parametrize("schema_readable", [True, False])
def test_enrichers_go_only_to_fields_the_table_has(airtable: AirtableStandin, schema_readable: bool) -> None:
    """A table made for the answers, without a field per enricher, refused every record
    (UNKNOWN_FIELD_NAME). Without the schema, each such field is refused once, then left out."""
    airtable.schema_readable = schema_readable
    fields = {"name": "singleLineText", "description": "multilineText", "summary": "multilineText",
              "language": "singleSelect"}
    table = airtable.add_table("appBase", "Companies", fields, companies(12))
    records = pd.DataFrame(open_source("airtable://appBase/Companies").read().records)
    records = records.assign(summary="s", word_count=3, language="en", quality_score=0.5)
    counts = open_sink("airtable://appBase/Companies", ["summary"], ENRICHED_FIELDS).write(records)
    assert (counts["updated"], counts["failed"]) == (12, 0)
    assert {(r["fields"]["summary"], r["fields"]["language"]) for r in table.records.values()} == {
        ("s", "en")}
    refused = [e for e in airtable.log if e["status"] == 422]
    assert len(refused) == (0 if schema_readable else 2)  # word_count, then quality_score
    # Named in the URI, a field the table lacks stops the write.
    with pytest.raises(UserInputError, match="word_count"):
        open_sink("airtable://appBase/Companies?fields=summary,word_count", ["summary"],
                  ENRICHED_FIELDS).write(records)


def test_without_the_schema_scope_lists_are_written_as_json_text(airtable: AirtableStandin) -> None:
    airtable.schema_readable = False
    fields = {"name": "singleLineText", "notes": "multilineText"}
    table = airtable.add_table("appBase", "Companies", fields, [{"name": "Acme"}])
    counts = open_sink("airtable://appBase/Companies?key=name", ["notes"]).write(
        pd.DataFrame({"name": ["Acme"], "notes": [["a", "b"]]}))
    assert (counts["updated"], counts["failed"]) == (1, 0)
    assert [r["fields"]["notes"] for r in table.records.values()] == ['["a", "b"]']
    assert [e["status"] for e in airtable.log if "/meta/" in e["path"]] == [403]


def test_errors_name_the_problem_and_never_the_token(airtable: AirtableStandin,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    airtable.add_table("appBase", "Companies", FIELDS, companies(1))
    with pytest.raises(UserInputError, match="403 INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND") as missing:
        open_source("airtable://appBase/Nope").read()
    monkeypatch.setenv("AIRTABLE_API_KEY", "patWrong.secret-value")
    with pytest.raises(UserInputError, match="401 AUTHENTICATION_REQUIRED") as wrong:
        open_source("airtable://appBase/Companies").read()
    monkeypatch.delenv("AIRTABLE_API_KEY")
    with pytest.raises(UserInputError, match=r"AIRTABLE_API_KEY.*AirtableConnection block") as unset:
        open_source("airtable://appBase/Companies")
    for error in (missing.value, wrong.value, unset.value):
        assert TOKEN not in str(error) and "secret-value" not in str(error)


@pytest.mark.slow
def test_round_trip_updates_the_same_records_without_duplicates(prefect_api: None, airtable: AirtableStandin,
                                                                tmp_path: Path) -> None:
    from tests.pipeline import run_pipeline

    table = airtable.add_table("appBase", "Companies", FIELDS, companies(12))
    template = tmp_path / "t.yaml"
    template.write_text("name: profile\nprovider: none\nmodel: none\nprompt: 'Describe {{ name }}'\n"
                        "input:\n  name: string\noutput:\n  summary: string\n")
    uri = "airtable://appBase/Companies"
    first = run_pipeline(uri, template, tmp_path / "run1", destination=uri)
    assert first.is_completed(), first.message
    summary = first.result()
    assert summary["destination"]["updated"] == 12 and summary["destination"]["failed"] == 0
    assert all(r["fields"]["word_count"] > 0 and r["fields"]["language"] == "en"
               for r in table.records.values())
    ids = set(table.records)
    changed = next(iter(table.records.values()))
    words_before = changed["fields"]["word_count"]
    changed["fields"]["description"] = "Now a much longer description " * 5
    second = run_pipeline(uri, template, tmp_path / "run2", destination=uri)
    assert second.is_completed(), second.message
    assert second.result()["destination"]["updated"] == 12
    assert set(table.records) == ids, "the second run must update, not create"
    assert changed["fields"]["word_count"] > words_before + 15, "the rerun wrote fresh values"


@pytest.mark.usefixtures("prefect_api")
def test_a_table_without_a_field_for_an_answer_is_refused_before_any_call(
        airtable: AirtableStandin, llm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It failed at export (UNKNOWN_FIELD_NAME), after the model had been paid for every record."""
    from typer.testing import CliRunner

    from augment_it.cli.main import app
    from tests.pipeline import run_pipeline

    airtable.add_table("appBase", "Companies", {"name": "singleLineText", "description": "multilineText",
                                                 "summary": "multilineText"}, companies(3))
    template = tmp_path / "t.yaml"
    template.write_text("name: profile\nmodel: gpt-4o-mini\nprompt: 'Describe {{ name }}'\n"
                        "output:\n  summary: string\n  industry: string\n")
    uri = "airtable://appBase/Companies"
    said = ("airtable:appBase/Companies: the table has no field(s) industry to write the answers to; "
            "add them, or choose the fields to write with ?fields=")
    state = run_pipeline(uri, template, tmp_path / "run", destination=uri)  # as a deployment runs it
    assert state.is_failed() and said in str(state.message)
    cli = CliRunner().invoke(app, ["run", uri, "-t", str(template), "--to", uri,
                                   "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 2 and said in cli.output, cli.output
    assert llm.total_requests == 0
    assert not (tmp_path / "run" / ".augment").exists() and not (tmp_path / "cli").exists()
    # Naming the fields to write is the way out.
    good = run_pipeline(uri, template, tmp_path / "run", destination=f"{uri}?fields=summary")
    assert good.is_completed(), good.message
    assert good.result()["destination"]["updated"] == 3


@pytest.mark.usefixtures("prefect_api")
def test_answers_go_to_a_column_whose_name_is_no_identifier(airtable: AirtableStandin, llm,
                                                            tmp_path: Path) -> None:
    """Airtable columns are named for people (`AI Summary`); an output field had to be an identifier,
    so no answer could be written to one."""
    from tests.pipeline import run_pipeline

    columns = {"name": "singleLineText", "description": "multilineText", "AI Summary": "multilineText"}
    table = airtable.add_table("appBase", "Companies", columns, companies(3))
    template = tmp_path / "t.yaml"
    template.write_text("name: profile\nmodel: gpt-4o-mini\nprompt: 'Describe {{ name }}'\n"
                        "output:\n  AI Summary: string\n")
    uri = "airtable://appBase/Companies"
    for run in ("run1", "run2"):  # the second from the answer cache, onto the same records
        state = run_pipeline(uri, template, tmp_path / run, destination=uri)
        assert state.is_completed(), state.message
        assert state.result()["destination"]["updated"] == 3
    assert len(table.records) == 3 and llm.total_requests == 3
    assert all(r["fields"]["AI Summary"].startswith(f"AI_Summary of Describe {r['fields']['name']}")
               for r in table.records.values())


def test_ai_text_reads_as_its_text_and_a_failed_cell_as_empty_saying_why(airtable: AirtableStandin) -> None:
    """Airtable gives an AI text cell as its state object and a formula in error as {"error": ...}
    (field model, "Cell format (read only)"): a prompt was sent those objects as the field's text."""
    table = airtable.add_table("appBase", "Companies", FIELDS, companies(5))
    cells = [{"state": "generated", "isStale": False, "value": "Makes widgets."},
             {"state": "generated", "isStale": True, "value": "Made widgets."},
             {"state": "error", "errorType": "rate limited", "isStale": False, "value": None},
             {"state": "loading", "isStale": False, "value": None},
             {"error": "#ERROR!"}]
    for record, cell in zip(table.records.values(), cells, strict=True):
        record["fields"]["pitch"] = cell
    with pytest.warns(UserWarning) as notices:
        records = open_source("airtable://appBase/Companies").read().records
    assert [r["pitch"] for r in records] == ["Makes widgets.", "Made widgets.", None, None, None]
    ids = [r[STORE_KEY] for r in records]
    assert sorted(str(n.message) for n in notices) == sorted([
        f"airtable:appBase/Companies: field 'pitch' read as empty in 1 record(s) ({ids[2]}): its AI text "
        "failed in Airtable (rate limited)",
        f"airtable:appBase/Companies: field 'pitch' read as empty in 1 record(s) ({ids[3]}): its AI text "
        "was still being generated in Airtable",
        f"airtable:appBase/Companies: field 'pitch' read as empty in 1 record(s) ({ids[4]}): its formula "
        "gives #ERROR! in Airtable"])


def test_a_blank_row_is_quarantined_not_sent(airtable: AirtableStandin) -> None:
    """Airtable lists a row nobody filled in as `"fields": {}`."""
    table = airtable.add_table("appBase", "Companies", FIELDS, companies(2))
    next(iter(table.records.values()))["fields"] = {}
    read = open_source("airtable://appBase/Companies").read()
    assert [r["name"] for r in read.records] == ["Company 1"]
    assert [r["_reason"].split(": ", 1)[1] for r in read.rejects] == ["no field holds a value"]


@pytest.mark.parametrize("schema_readable", [True, False])
def test_fields_airtable_fills_in_neither_make_a_record_nor_change_it(airtable: AirtableStandin,
                                                                      schema_readable: bool) -> None:
    """Airtable lists an auto number or a creation time in every row, so a blank one was sent to
    the model; and a write-back changes a last-modified time, so a rerun took every record for
    changed and asked its reviewer again. Without the schema's types nothing can be told apart."""
    from augment_it.review_ledger import fingerprint

    airtable.schema_readable = schema_readable
    kinds = {"No.": "autoNumber", "Created": "createdTime", "Last modified": "lastModifiedTime"}
    airtable.add_table("appBase", "Companies", FIELDS | kinds, [*companies(2), {}])
    first = open_source("airtable://appBase/Companies").read()
    if not schema_readable:
        assert len(first.records) == 3 and "Last modified" in first.records[0]
        return
    assert [r["name"] for r in first.records] == ["Company 0", "Company 1"]
    assert [r["_reason"].split(": ", 1)[1] for r in first.rejects] == ["no field holds a value"]
    assert {"No.", "Created"} <= set(first.records[0]) and "Last modified" not in first.records[0]
    counts = open_sink("airtable://appBase/Companies", ["summary"]).write(
        pd.DataFrame(first.records).assign(summary="written back"))
    assert counts["updated"] == 2
    again = open_source("airtable://appBase/Companies").read()
    assert [r["summary"] for r in again.records] == ["written back"] * 2
    assert [fingerprint(r) for r in again.records] == [fingerprint(r | {"summary": "written back"})
                                                       for r in first.records]
