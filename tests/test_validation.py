from __future__ import annotations

import pandas as pd

from augment_it.records import ID, REASON, ROW
from augment_it.sources import SOURCE
from augment_it.validation import RecordSchema, assign_ids, validate_records


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**r, ROW: i + 2, SOURCE: f"f.csv:{i + 2}"} for i, r in enumerate(rows)])


def test_content_hash_ids_are_stable_and_ignore_position() -> None:
    a = assign_ids(frame([{"name": "Ada"}, {"name": "Grace"}]), None)
    b = assign_ids(frame([{"name": "Grace"}, {"name": "Ada"}]), None)
    assert set(a[ID]) == set(b[ID]) and a[ID].nunique() == 2


def test_duplicate_and_empty_ids_are_quarantined_with_row_and_field() -> None:
    result = validate_records(
        frame([{"id": "1", "n": "a"}, {"id": "2", "n": "b"}, {"id": "1", "n": "c"}, {"id": None, "n": "d"}]),
        RecordSchema(id_column="id"),
    )
    assert list(result.valid[ID]) == ["2"]
    reasons = dict(zip(result.quarantined[ROW], result.quarantined[REASON], strict=True))
    assert reasons[2] == "f.csv:2: duplicate id '1' (in id)"
    assert reasons[4] == "f.csv:4: duplicate id '1' (in id)"
    assert reasons[5] == "f.csv:5: id column 'id' is empty"


def test_declared_types_are_checked_then_coerced() -> None:
    result = validate_records(
        frame([{"id": "1", "employees": "12", "site": "https://a.example"},
               {"id": "2", "employees": "many", "site": "https://b.example"},
               {"id": "3", "employees": "7", "site": "nope"}]),
        RecordSchema(id_column="id", required=["employees"], types={"employees": "integer", "site": "url"}),
    )
    assert list(result.valid["employees"]) == [12]
    assert list(result.quarantined[REASON]) == [
        "f.csv:3: field 'employees' = 'many' is not a valid integer",
        "f.csv:4: field 'site' = 'nope' is not a valid url",
    ]


def test_missing_id_column_quarantines_every_row_saying_why() -> None:
    result = validate_records(frame([{"name": "Ada"}, {"name": "Grace"}]), RecordSchema(id_column="id"))
    assert result.valid.empty and len(result.quarantined) == 2
    assert "column 'id' is missing from the source (it has: name)" in result.quarantined[REASON][0]


def test_numbers_beyond_a_64_bit_float_are_quarantined_naming_the_field() -> None:
    result = validate_records(frame([{"id": "1", "x": "1e999"}, {"id": "2", "x": "-2.5e10"}]),
                              RecordSchema(id_column="id", types={"x": "number"}))
    assert list(result.valid["x"]) == [-2.5e10]
    assert list(result.quarantined[REASON]) == [
        "f.csv:2: field 'x' = '1e999' is out of range for a 64-bit float"]
    checks = {e["expectation"]: e for e in result.expectations}
    assert checks["expect_column_values_to_be_finite"]["unexpected_count"] == 1
    assert "rows" not in checks["expect_column_values_to_be_finite"]


def test_integers_must_fit_in_64_bits_to_the_last_value() -> None:
    huge = "9" * 5000  # past Python's digit limit for int()
    result = validate_records(
        frame([{"id": "1", "n": "-9223372036854775808"}, {"id": "2", "n": "-9223372036854775809"},
               {"id": "3", "n": huge}]),
        RecordSchema(id_column="id", types={"n": "integer"}),
    )
    assert list(result.valid["n"]) == [-(2**63)]
    assert list(result.quarantined[REASON]) == [
        "f.csv:3: field 'n' = '-9223372036854775809' is out of range for a 64-bit integer",
        f"f.csv:4: field 'n' = '{huge}' is out of range for a 64-bit integer",
    ]
