from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from augment_it.records import REASON, ROW, InputError
from augment_it.sources import SOURCE, open_source
from tests.conftest import DATA

BAD = DATA / "bad"


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
                                         "(byte 0xff at char 3)")


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
    assert result.rejects[0][REASON].startswith("broken.md: front matter is not valid YAML")


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
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(InputError, match="cannot tell the format"):
        open_source(str(tmp_path / "a.xlsx"))
    with pytest.raises(InputError, match="does not exist"):
        open_source(str(tmp_path / "nope.csv"))
