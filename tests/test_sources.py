from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from augment_it.records import REASON, ROW, InputError
from augment_it.sources import SOURCE, open_source
from augment_it.sources.files.text import encoding_advice
from tests.conftest import DATA

BAD = DATA / "bad"
NOT_UTF8 = encoding_advice("\udce9", None)  # what a file with no UTF-8 text in it is told


def read(path: Path):
    return open_source(str(path)).read()


def test_csv_rows_keep_their_position(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("id,name\n1,Ada\n2,Grace\n")
    records = read(path).records
    assert [(r["id"], r["name"], r[ROW], r[SOURCE]) for r in records] == [
        ("1", "Ada", 2, "people.csv:2"), ("2", "Grace", 3, "people.csv:3")]


def test_truncated_csv_rows_are_rejected_with_line_numbers() -> None:
    result = read(BAD / "truncated.csv")
    assert [r["id"] for r in result.records] == ["1", "3"]
    reasons = [r[REASON] for r in result.rejects]
    assert reasons[0] == "truncated.csv:3: row has 2 fields, the header has 3 (id, name, website)"
    assert reasons[1].startswith("truncated.csv line 5:")
    assert "Delta" in result.rejects[1]["raw"]


def test_invalid_utf8_names_the_field() -> None:
    result = read(BAD / "invalid-utf8.csv")
    assert [r["id"] for r in result.records] == ["1", "3"]
    assert result.rejects[0][REASON] == ("invalid-utf8.csv:3: field 'name' is not valid UTF-8 "
                                         "(byte 0xff at char 3)" + NOT_UTF8)


def test_jsonl_bad_lines_are_rejected_not_fatal() -> None:
    result = read(BAD / "records.jsonl")
    assert [r["id"] for r in result.records] == ["1", "3"]
    assert result.rejects[0][REASON].startswith("records.jsonl:2: not valid JSON")
    assert result.rejects[1][REASON] == "records.jsonl:4: expected an object of fields, got list"


def test_yaml_alias_bomb_is_refused() -> None:
    with pytest.raises(InputError, match="alias bomb"):
        read(BAD / "alias-bomb.yaml")


def test_yaml_list_of_mappings_uses_safe_load(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("- {id: 1, name: Ada}\n- {id: 2, name: !!python/name:os.system ''}\n")
    with pytest.raises(InputError, match="not valid YAML"):
        read(path)
    path.write_text("- {id: 1, name: Ada}\n- {id: 2, tags: [a, b]}\n")
    assert [r["id"] for r in read(path).records] == [1, 2]


def test_markdown_folder_front_matter_and_body() -> None:
    result = read(BAD / "notes-broken")
    assert sorted(r["id"] for r in result.records) == ["n1", "n3"]
    good = next(r for r in result.records if r["id"] == "n1")
    assert good["body"].startswith("Acme builds") and good["file"] == "good.md"
    assert len(result.rejects) == 1
    # One line, saying where: PyYAML's own text drew the line under a caret over five lines.
    assert result.rejects[0][REASON] == (
        "broken.md: front matter is not valid YAML: found unexpected end of stream at line 5, column 1 "
        "(while scanning a quoted scalar at line 3, column 7)")


def test_empty_file_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="is empty"):
        read(BAD / "empty.csv")


def test_json_array_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps([{"id": "x", "n": 1}, 5]))
    result = read(tmp_path / "a.json")
    assert [r["id"] for r in result.records] == ["x"]
    assert result.rejects[0][REASON] == "a.json[1]: expected an object of fields, got int"
    pd.DataFrame({"id": ["p", "q"], "n": [1, 2]}).to_parquet(tmp_path / "a.parquet")
    assert [r["id"] for r in read(tmp_path / "a.parquet").records] == ["p", "q"]


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.docx").write_text("x")
    with pytest.raises(InputError, match="cannot tell the format"):
        open_source(str(tmp_path / "a.docx"))
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "nope.csv"))


def test_a_glob_or_a_folder_of_data_files_is_read_as_one_source(tmp_path: Path) -> None:
    exports = tmp_path / "exports"
    (exports / "2026" / "02").mkdir(parents=True)
    (exports / "2026" / "01.csv").write_text("id,name\n1,Acme\n2,Borealis,extra\n")
    (exports / "2026" / "02" / "a.jsonl").write_text('{"id": 3, "name": "Cobalt"}\n{oops\n')
    (exports / "2026" / "02" / "notes.txt").write_text("not data")
    (exports / ".augment").mkdir()  # a hidden folder (a run's own parts, a notes app's trash)
    (exports / ".augment" / "old.csv").write_text("id,name\n9,Stale\n")

    for source in (exports, exports / "2026" / "*" / "*.jsonl", exports / "2026" / "**"):
        result = open_source(str(source)).read()
        assert [r["name"] for r in result.records] in (["Acme", "Cobalt"], ["Cobalt"]), source
    result = read(exports)
    # Each file names its records by its path under the folder; _row counts on across the files.
    assert [r[SOURCE] for r in result.records] == ["2026/01.csv:2", "2026/02/a.jsonl:1"]
    assert [r[SOURCE] for r in result.rejects] == ["2026/01.csv:3", "2026/02/a.jsonl:2"]
    rows = {r[SOURCE]: r[ROW] for r in result.records + result.rejects}
    in_order = ["2026/01.csv:2", "2026/01.csv:3", "2026/02/a.jsonl:1", "2026/02/a.jsonl:2"]
    assert sorted(rows, key=rows.__getitem__) == in_order and len(set(rows.values())) == 4


def test_a_glob_or_folder_without_readable_files_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"^folder .*empty is empty$"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(InputError, match=r"no file in folder .*pictures can be read \(a.png\): augment-it"):
        open_source(str(tmp_path / "pictures"))
    with pytest.raises(InputError, match=r"^source .*\*\.csv does not exist, and no file matches it as a"):
        open_source(str(tmp_path / "*.csv"))
    with pytest.raises(InputError, match=r"none of the files matching .*\*\.png can be read"):
        open_source(str(tmp_path / "pictures" / "*.png"))


def test_a_notes_folder_skips_hidden_folders(tmp_path: Path) -> None:
    (tmp_path / ".trash").mkdir()
    (tmp_path / ".trash" / "deleted.md").write_text("---\ntitle: Gone\n---\nDeleted note\n")
    (tmp_path / "kept.md").write_text("---\ntitle: Kept\n---\nA note\n")
    (tmp_path / "data.csv").write_text("id,name\n1,Acme\n")  # beside notes: an attachment, not read
    assert [r["title"] for r in read(tmp_path).records] == ["Kept"]


def test_an_exported_parquet_read_again_gives_back_its_lists_and_mappings(tmp_path: Path) -> None:
    """Exports hold lists and mappings as JSON text; read again as a source (a second template on
    the first one's export) they were text, and `{{ tags | join }}` joined characters."""
    from augment_it.layout import write_frame

    frame = pd.DataFrame({"id": ["1", "2"], "tags": [["a", "b"], []],
                          "address": [{"city": "Oslo"}, None], "note": ["[1]", "x"]})
    write_frame(frame, str(tmp_path / "exported.parquet"))
    records = read(tmp_path / "exported.parquet").records
    assert [r["tags"] for r in records] == [["a", "b"], []]
    assert [r["address"] for r in records] == [{"city": "Oslo"}, None]
    assert [r["note"] for r in records] == ["[1]", "x"]  # text that looks like JSON stays text


ODD = DATA / "odd"


def storable(value: object) -> bool:
    """Nothing a source hands on may hold a lone surrogate: UTF-8 storage (Parquet) refuses it."""
    json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")
    return True


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_files_marked_utf16_or_utf32_are_read(codec: str, tmp_path: Path) -> None:
    """Excel's "Unicode Text" (UTF-16, tab-separated) and Windows PowerShell 5's Out-File (UTF-16)
    mark their files with a byte order mark; read as UTF-8, every byte of them was invalid."""
    sheet, exported, notes = tmp_path / "sheet.tsv", tmp_path / "records.json", tmp_path / "notes"
    sheet.write_bytes("\ufeffid\tname\r\n1\tZoë\r\n2\t東京\r\n".encode(codec))
    exported.write_bytes('\ufeff[{"id": 1, "name": "Zoë"}]'.encode(codec))
    assert [(r["id"], r["name"]) for r in read(sheet).records] == [("1", "Zoë"), ("2", "東京")]
    assert [(r["id"], r["name"]) for r in read(exported).records] == [(1, "Zoë")]
    notes.mkdir()
    (notes / "a.md").write_bytes("\ufeff---\ntitle: Zoë\n---\nBody\n".encode(codec))
    (notes / "broken.md").write_bytes("\ufeffZo".encode(codec)[:-1])  # its last character cut short
    result = read(notes)
    wide = codec[:6].upper()
    assert [r["title"] for r in result.records] == ["Zoë"]
    assert result.rejects[0][REASON].startswith(f"broken.md: starts with a {wide} byte order mark but is "
                                               f"not valid {wide}")


def test_latin1_header_refuses_the_file_naming_the_column() -> None:
    with pytest.raises(InputError) as refused:
        read(ODD / "latin1-header.csv")
    assert str(refused.value) == ("latin1-header.csv: header column 2 ('na\ufffdme') is not valid UTF-8 "
                                  "(byte 0xe9)" + NOT_UTF8)


def test_invalid_text_in_nested_values_and_field_names_is_quarantined() -> None:
    result = read(ODD / "nested-latin1.jsonl")
    assert [r["id"] for r in result.records] == ["2"]
    assert [r[REASON] for r in result.rejects] == [
        "nested-latin1.jsonl:1: field 'tags' is not valid UTF-8 (byte 0xe9 at tags[0] char 3)" + NOT_UTF8,
        "nested-latin1.jsonl:3: field 'contact' is not valid UTF-8 (lone surrogate \\ud800 at "
        "contact.note char 0)" + NOT_UTF8,
        "nested-latin1.jsonl:4: field name 'n\ufffdme' is not valid UTF-8 (byte 0xe4 at char 1)" + NOT_UTF8,
    ]
    assert all(storable(r) for r in result.rejects)
    assert "Jos\ufffd" in result.rejects[0]["raw"]


def test_a_file_in_a_legacy_encoding_is_read_in_the_encoding_named(tmp_path: Path) -> None:
    """Excel's plain "CSV" on Windows is cp1252: read as UTF-8, every record with an accent was
    quarantined as "not valid UTF-8", with nothing saying why or what to do."""
    legacy = {"people.csv": "id,name,city\r\n1,Zoë Müller,Zürich\r\n2,Ada,London\r\n"
                            "3,José,Málaga \u2013 ES\r\n",
              "people.yaml": "- {id: 1, name: Zoë}\n", "notes/zoe.md": "---\ntitle: Zoë\n---\nCafé au lait\n",
              "notes/ada.md": "---\ntitle: Ada\n---\nCrème brûlée\n"}
    for name, text in legacy.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(text.encode("cp1252"))
    csv_read = read(tmp_path / "people.csv")
    assert [r["id"] for r in csv_read.records] == ["2"]
    assert [r[REASON] for r in csv_read.rejects] == [
        f"people.csv:{row}: field 'name' is not valid UTF-8 (byte 0x{byte:x} at char {char}){NOT_UTF8}"
        for row, byte, char in [(2, 0xeb, 2), (4, 0xe9, 3)]]
    assert "--encoding cp1252" in NOT_UTF8
    with pytest.raises(InputError, match=r"people.yaml is not valid UTF-8 \(byte 0xeb on line 1\); the "
                                         r"file is not UTF-8: name its encoding \(--encoding cp1252"):
        read(tmp_path / "people.yaml")
    notes = read(tmp_path / "notes")
    assert [r[REASON] for r in notes.rejects] == [
        "ada.md: field 'body' is not valid UTF-8 (byte 0xe8 at char 2)" + NOT_UTF8,
        "zoe.md: front matter is not valid UTF-8 (byte 0xeb on line 2)" + NOT_UTF8]

    def read_as(path: Path, encoding: str) -> list[dict]:
        return open_source(str(path), encoding).read().records

    assert [(r["name"], r["city"]) for r in read_as(tmp_path / "people.csv", "windows-1252")] == [
        ("Zoë Müller", "Zürich"), ("Ada", "London"), ("José", "Málaga \u2013 ES")]
    assert [r["name"] for r in read_as(tmp_path / "people.yaml", "cp1252")] == ["Zoë"]
    assert [(r["title"], r["body"]) for r in read_as(tmp_path / "notes", "cp1252")] == [
        ("Ada", "Crème brûlée"), ("Zoë", "Café au lait")]
    # A byte order mark says what a file is, whatever encoding was named.
    (tmp_path / "marked.csv").write_bytes("\ufeffid,name\n1,Zoë\n".encode())
    assert [r["name"] for r in read_as(tmp_path / "marked.csv", "cp1252")] == ["Zoë"]


def test_text_a_named_encoding_cannot_decode_is_quarantined_naming_it(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_bytes(b"id,name\n1,Zo\xeb\n2,bad \x81 byte\n")
    result = open_source(str(tmp_path / "people.csv"), "cp1252").read()
    assert [r["name"] for r in result.records] == ["Zoë"]
    assert [r[REASON] for r in result.rejects] == [
        "people.csv:3: field 'name' is not valid cp1252 (byte 0x81 at char 4)"]
    assert storable(result.rejects)
    (tmp_path / "wide.csv").write_bytes("id\n1\n".encode("utf-16-le")[:-1])
    with pytest.raises(InputError, match=r"wide.csv: is not valid utf-16-le \(byte 8: truncated data\)"):
        open_source(str(tmp_path / "wide.csv"), "utf-16-le").read()


def test_a_utf8_file_with_a_bad_byte_is_not_told_it_is_in_another_encoding(tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_bytes("id,name\n1,Zoë\n2,Bj\xf6rn\n".encode("latin-1").replace(
        b"Zo\xeb", "Zoë".encode()))
    assert [r[REASON] for r in read(tmp_path / "people.csv").rejects] == [
        "people.csv:3: field 'name' is not valid UTF-8 (byte 0xf6 at char 2)"]


@pytest.mark.parametrize("encoding", ["base64", "klingon", "rot13"])
def test_an_unknown_encoding_or_a_store_given_one_is_refused(encoding: str, tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text("id\n1\n")
    with pytest.raises(InputError, match=f"unknown text encoding '{encoding}'"):
        open_source(str(tmp_path / "people.csv"), encoding)
    with pytest.raises(InputError, match=r"an encoding \(cp1252\) is only for files: airtable:// does not"):
        open_source("airtable://appX/tblY", "cp1252")


@pytest.mark.parametrize(("header", "problem"), [
    ("id,name,name,,notes", "header column 3 repeats 'name' (column 2); column 4 has no name"),
    ("id, id ", "header column 2 repeats 'id' (column 1)"),
])
def test_a_header_with_unnamed_or_repeated_columns_names_them(header: str, problem: str,
                                                              tmp_path: Path) -> None:
    (tmp_path / "people.csv").write_text(f"{header}\n1,2,3,4,5\n")
    with pytest.raises(InputError) as refused:
        read(tmp_path / "people.csv")
    assert str(refused.value) == f"people.csv: {problem}: give every column a name of its own"


def test_a_bad_csv_line_is_rejected_alone_and_reading_goes_on() -> None:
    result = read(ODD / "stray-quote.csv")
    assert [r["id"] for r in result.records] == ["1", "3", "5"]
    assert [(r[SOURCE], r[REASON], r["raw"]) for r in result.rejects] == [
        ("stray-quote.csv:3", "stray-quote.csv line 3: ',' expected after '\"'", '2,"Borealis"x\n'),
        ("stray-quote.csv:5", "stray-quote.csv line 5: unexpected end of data (a quote opened on this "
                              "line is never closed)", '4,"Delta\n')]
    assert [r[SOURCE] for r in result.records] == ["stray-quote.csv:2", "stray-quote.csv:4",
                                                   "stray-quote.csv:6"]


def test_a_field_longer_than_the_csv_module_default_is_read(tmp_path: Path) -> None:
    long = "x" * 200_000
    (tmp_path / "wide.csv").write_text(f'id,text\n1,short\n2,"{long}\nstill the field"\n3,short\n')
    records = read(tmp_path / "wide.csv").records
    assert [r["id"] for r in records] == ["1", "2", "3"]
    assert records[1]["text"] == f"{long}\nstill the field"


def test_jsonl_lines_end_only_at_newline() -> None:
    result = read(ODD / "line-separators.jsonl")
    assert [(r["name"], r[SOURCE]) for r in result.records] == [
        ("line\u2028separator", "line-separators.jsonl:1"), ("next\u0085line", "line-separators.jsonl:2"),
        ("para\u2029graph", "line-separators.jsonl:4")]
    # Raw control characters are not JSON, but they cost only their own line, kept whole.
    assert [(r[SOURCE], r["raw"]) for r in result.rejects] == [
        ("line-separators.jsonl:3", '{"id": "3", "name": "tab\x0bform\x0cfile\x1cgroup\x1drecord\x1e"}')]


def test_a_wrapped_json_document_is_unwrapped(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match=r"under 'records'; ignoring the other top-level keys \(total\)"):
        result = read(ODD / "wrapped.json")
    assert [(r["id"], r["name"], r[SOURCE]) for r in result.records] == [
        ("1", "Acme", 'wrapped.json["records"][0]'), ("2", "Borealis", 'wrapped.json["records"][1]')]
    (tmp_path / "data.yaml").write_text("data:\n  - {id: a}\n  - oops\n")
    result = read(tmp_path / "data.yaml")
    assert [r["id"] for r in result.records] == ["a"]
    assert result.rejects[0][REASON] == 'data.yaml["data"][1]: expected an object of fields, got str'
    # A plain object is still one record.
    (tmp_path / "one.json").write_text('{"id": "x", "tags": ["a", "b"]}')
    assert [(r["id"], r["tags"]) for r in read(tmp_path / "one.json").records] == [("x", ["a", "b"])]


def test_every_yaml_document_is_read() -> None:
    records = read(ODD / "multi-document.yaml").records
    assert [(r["id"], r["name"], r[SOURCE]) for r in records] == [
        ("1", "Acme", "multi-document.yaml document 1"),
        ("2", "Borealis", "multi-document.yaml document 2[0]"),
        ("3", "Cobalt", "multi-document.yaml document 2[1]")]
    assert [r[ROW] for r in records] == [1, 2, 3]


def test_yaml_scalars_follow_yaml_1_2() -> None:
    first, second = read(ODD / "yaml-1.1.yaml").records
    assert {k: first[k] for k in ("id", "zip", "country", "active", "mode", "time", "born")} == {
        "id": "007", "zip": "01234", "country": "NO", "active": "yes", "mode": "on", "time": "1:30",
        "born": "2024-01-05"}
    assert (first["n"], first["ratio"], first["flag"]) == (12, 0.5, True)
    assert (second["id"], second["active"], second["mode"]) == ("008", "no", "off")
    assert (second["n"], second["ratio"], second["flag"]) == (-3, 1000.0, False)


def test_markdown_front_matter_is_a_mapping_that_keeps_body_and_file() -> None:
    result = read(ODD / "notes-odd")
    assert [(r["id"], r["country"], r["zip"], r["body"]) for r in result.records] == [
        ("007", "NO", "01234", "Kept as written.")]
    assert sorted(r[REASON] for r in result.rejects) == [
        "body-clash.md: front matter sets 'body', reserved for the note's own text (body) and path "
        "(file); rename it in the front matter",
        "list-front-matter.md: front matter must be a mapping of fields, got list"]


def test_csv_delimiter_is_sniffed_from_the_header(tmp_path: Path) -> None:
    records = read(ODD / "semicolon.csv").records
    assert [(r["id"], r["name"], r["city"]) for r in records] == [
        ("1", "Acme", "Oslo; Norway"), ("2", "Borealis", "Bergen")]
    assert [r["name"] for r in read(ODD / "tab-separated.csv").records] == ["Acme", "Borealis"]
    # A comma in the header keeps comma, whatever the values hold.
    (tmp_path / "c.csv").write_text('id,name\n1,"a;b;c"\n')
    assert read(tmp_path / "c.csv").records[0]["name"] == "a;b;c"
    (tmp_path / "t.tsv").write_text("id\tname;x\n1\ta,b\n")
    assert read(tmp_path / "t.tsv").records[0]["name;x"] == "a,b"
    # Excel's `sep=` line names the delimiter; the rows keep their line numbers in the file.
    (tmp_path / "excel.csv").write_bytes("\ufeffsep=;\r\nid;name,legal\r\n1;Acme, Inc.\r\n".encode())
    records = read(tmp_path / "excel.csv").records
    assert [(r["id"], r["name,legal"], r[SOURCE]) for r in records] == [("1", "Acme, Inc.", "excel.csv:3")]


def test_empty_trailing_columns_are_dropped_and_filled_ones_refused() -> None:
    with pytest.warns(UserWarning, match="dropped 1 unnamed column"):
        records = read(ODD / "excel-trailing-comma.csv").records
    assert [{k: v for k, v in r.items() if not k.startswith("_")} for r in records] == [
        {"id": "1", "name": "Acme"}, {"id": "2", "name": "Borealis"}]
    with pytest.raises(InputError) as refused:
        read(ODD / "trailing-column-with-values.csv")
    assert str(refused.value) == ("trailing-column-with-values.csv: line 3 has a value in column 3 "
                                  "('forgotten'), which the header leaves unnamed: give the column a "
                                  "name or clear it")


def test_empty_rows_and_cells_a_spreadsheet_saves_around_the_table_are_not_records(tmp_path: Path) -> None:
    """Excel saves a sheet whose table starts lower down with empty rows above the header, and
    formatted empty rows as rows of delimiters; other tools end each row with a delimiter. The
    header was taken from the empty first row ("names no column"), and the empty rows became
    records of nothing, each sent to the model."""
    (tmp_path / "sheet.csv").write_text("\n;;;\nid;name;;\n1;Acme;;\n;;;\n ; ;;\n2;Borealis;;\n")
    with pytest.warns(UserWarning, match="dropped 2 unnamed column"):
        records = read(tmp_path / "sheet.csv").records
    assert [(r["id"], r["name"], r[SOURCE]) for r in records] == [
        ("1", "Acme", "sheet.csv:4"), ("2", "Borealis", "sheet.csv:7")]
    (tmp_path / "ends.csv").write_text("id,name\n1,Acme,\n2,Borealis,,\n3\n")
    result = read(tmp_path / "ends.csv")
    assert [r["name"] for r in result.records] == ["Acme", "Borealis"]
    assert [r[REASON] for r in result.rejects] == ["ends.csv:4: row has 1 field, the header has 2 (id, name)"]
    (tmp_path / "blank.csv").write_text(",,\n\n ,\n")
    with pytest.raises(InputError, match=r"blank\.csv: every line is empty: no header and no records"):
        read(tmp_path / "blank.csv")


def test_parquet_integers_with_nulls_stay_integers(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    big = 2**53 + 1
    pq.write_table(pa.table({"id": pa.array([1, None, big], pa.int64()), "name": ["a", "b", "c"]}),
                   tmp_path / "ids.parquet")
    records = read(tmp_path / "ids.parquet").records
    assert [r["id"] for r in records] == [1, None, big]
    assert all(type(r["id"]) is int for r in records if r["id"] is not None)


def test_parquet_maps_are_mappings(tmp_path: Path) -> None:
    """A MAP column came as a list of (key, value) pairs: `{{ attrs.color }}` rendered nothing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    maps = pa.map_(pa.string(), pa.int64())
    attrs = pa.array([[("rank", 1), ("size", 9)], None, []], maps)
    pq.write_table(pa.table({"id": [1, 2, 3], "attrs": attrs}), tmp_path / "maps.parquet")
    assert [r["attrs"] for r in read(tmp_path / "maps.parquet").records] == [{"rank": 1, "size": 9}, None, {}]
    # A map that repeats a key stays pairs: as a mapping, one of its values would be lost.
    pq.write_table(pa.table({"attrs": pa.array([[("rank", 1), ("rank", 2)]], maps)}),
                   tmp_path / "repeats.parquet")
    assert read(tmp_path / "repeats.parquet").records[0]["attrs"] == [("rank", 1), ("rank", 2)]


def test_text_in_binary_parquet_columns_is_text(tmp_path: Path) -> None:
    """Hive, Impala and older Spark write strings as BINARY without the UTF8 annotation: a prompt
    read them as bytes and said "About b'Acme'"."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"name": pa.array([b"Acme", None, "Zo\u00eb".encode()], pa.binary()),
                             "digest": pa.array([b"ok", None, b"\x8f\x00"], pa.binary()),
                             "flags": pa.array([b"\x00\x01", b"a", None], pa.large_binary())}),
                   tmp_path / "hive.parquet")
    records = read(tmp_path / "hive.parquet").records
    assert [r["name"] for r in records] == ["Acme", None, "Zoë"]
    assert [r["digest"] for r in records] == [b"ok", None, b"\x8f\x00"]  # not all text: left as it is
    assert [r["flags"] for r in records] == [b"\x00\x01", b"a", None]


def repeats(field: str, written: str = "") -> str:
    return f"field '{field}' appears 2 times{written}; rename or remove all but one"


@pytest.mark.parametrize(("name", "kept", "repeated"), [
    ("duplicate-keys.json", ["1", "4"], {"duplicate-keys.json[1]": repeats("name"),
                                         "duplicate-keys.json[2]": repeats("offices[0].city")}),
    ("duplicate-keys.jsonl", ["1", "4"], {"duplicate-keys.jsonl:2": repeats("name"),
                                          "duplicate-keys.jsonl:3": repeats("contact.email")}),
    ("duplicate-keys.yaml", ["1", "4", "5"], {"duplicate-keys.yaml[1]": repeats("name"),
                                              "duplicate-keys.yaml[2]": repeats("contact.email"),
                                              "duplicate-keys.yaml[5]": repeats("1", " (written 1, '1')"),
                                              "duplicate-keys.yaml[6]": repeats("1", " (written 1, true)")}),
])
def test_a_record_with_a_repeated_key_is_quarantined_naming_the_key(name: str, kept: list[str],
                                                                    repeated: dict[str, str]) -> None:
    """json and PyYAML keep a repeated key's last value silently; the first would be lost."""
    result = read(ODD / name)
    assert [r["id"] for r in result.records] == kept
    assert [(r[SOURCE], r[REASON]) for r in result.rejects] == [
        (where, f"{where}: {reason}") for where, reason in repeated.items()]
    assert [r[ROW] for r in result.rejects][:2] == [2, 3]
    assert "Borealis" in result.rejects[0]["raw"] and "Boreal Ltd" in result.rejects[0]["raw"]


def test_repeated_keys_keep_the_raw_text_and_a_merge_override_is_no_repeat() -> None:
    assert read(ODD / "duplicate-keys.json").rejects[0]["raw"] == (
        '{"id": "2", "name": "Borealis", "name": "Boreal Ltd"}')
    assert read(ODD / "duplicate-keys.jsonl").rejects[1]["raw"] == (
        '{"id": "3", "contact": {"email": "a@cobalt.io", "email": "b@cobalt.io"}}')
    merged = read(ODD / "duplicate-keys.yaml").records[-1]
    assert (merged["id"], merged["name"]) == ("5", "Delta")


def test_repeated_keys_in_front_matter_or_a_wrapper_lose_nothing(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("---\nid: a\ntitle: One\ntitle: Two\n---\nText.\n")
    (notes / "b.md").write_text("---\nid: b\n---\nText.\n")
    (notes / "c.md").write_text('{\n"id": "c", "tags": {"x": 1, "x": 2}\n}\nText.\n')
    result = read(notes)
    assert [r["id"] for r in result.records] == ["b"]
    assert [r[REASON] for r in result.rejects] == [f"a.md: front matter {repeats('title')}",
                                                  f"c.md: front matter {repeats('tags.x')}"]
    # The records under the first of two `records` keys would be lost without a word.
    (tmp_path / "twice.json").write_text('{"records": [{"id": "1"}], "records": [{"id": "2"}]}')
    with pytest.raises(InputError, match=r"twice.json: key 'records' appears 2 times; the records under "
                                         r"all but the last would be lost"):
        read(tmp_path / "twice.json")


def test_a_record_with_no_value_in_any_field_is_quarantined_not_sent(tmp_path: Path) -> None:
    """An empty object, a row of nulls, a store's blank row: a prompt about nothing was paid for."""
    (tmp_path / "people.json").write_text('[{"id": 1}, {}, {"name": null, "note": "  ", "tags": []}]')
    result = read(tmp_path / "people.json")
    assert [r["id"] for r in result.records] == [1]
    assert [(r[SOURCE], r[REASON], r["raw"]) for r in result.rejects] == [
        ("people.json[1]", "people.json[1]: no field holds a value", "{}"),
        ("people.json[2]", "people.json[2]: no field holds a value",
         '{"name": null, "note": "  ", "tags": []}')]


def test_a_title_above_the_table_is_named_rather_than_every_row_rejected(tmp_path: Path) -> None:
    """A report saved as CSV starts with its title: taken for the header, every row was quarantined
    against it and nothing said why."""
    (tmp_path / "report.csv").write_text("Companies, Q3\n\nid,name,city\n1,Acme,Oslo\n2,Borealis,Bergen\n")
    with pytest.raises(InputError) as refused:
        read(tmp_path / "report.csv")
    assert str(refused.value) == (
        "report.csv: every row has 3 fields but the header (line 1: 'Companies, Q3') has 2: if that line "
        "is a title above the table, remove it and any other line above the header")
    # Rows of several widths, or one that fits, are rejected one by one as before.
    (tmp_path / "ragged.csv").write_text("id,name\n1,Acme,x\n2,Borealis,y,z\n")
    assert len(read(tmp_path / "ragged.csv").rejects) == 2
