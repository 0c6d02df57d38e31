"""Values reach the export as the user wrote them: integers stay integers, dates stay dates,
nothing loses digits, and a value the product cannot carry quarantines its record, naming it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from augment_it.layout import read_frame, write_frame
from augment_it.records import ID, REASON, to_storable
from augment_it.settings import ProcessSettings
from augment_it.sources import open_source
from augment_it.validation import RecordSchema, validate_records
from tests.pipeline import assert_every_record_once, run_pipeline

NO_MODEL = ProcessSettings(provider="none")


def template(tmp_path: Path, **types: str) -> Path:
    path = tmp_path / "t.yaml"
    lines = ["name: t", "provider: none", "model: m", 'prompt: "Describe {{ name }}"']
    if types:
        lines += ["input:", *(f"  {field}: {kind}" for field, kind in types.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def collected(path: Path) -> pd.DataFrame:
    records, rejects = open_source(str(path)).read().frames()
    assert rejects.empty
    return records


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# 1. integers beyond 64 bits


@pytest.mark.usefixtures("prefect_api")
def test_integer_beyond_64_bits_is_quarantined_naming_field_and_value(tmp_path: Path) -> None:
    source = tmp_path / "big.csv"
    source.write_text("id,name,amount\n1,a,12345678901234567890\n2,b,9223372036854775807\n")
    state = run_pipeline(source, template(tmp_path, name="string", amount="integer"), tmp_path / "out",
                         id_column="id", settings=NO_MODEL)
    assert state.is_completed(), state.message
    ids = assert_every_record_once(tmp_path / "out", state.result())
    assert ids["exported"] == ["2"] and ids["quarantined"] == ["1"]
    quarantined = pd.read_parquet(tmp_path / "out" / "quarantined.parquet")
    assert list(quarantined[REASON]) == [
        "big.csv:2: field 'amount' = '12345678901234567890' is out of range for a 64-bit integer"]
    assert list(pd.read_parquet(tmp_path / "out" / "exported.parquet")["amount"]) == [2**63 - 1]


@pytest.mark.parametrize("values", [[2**63 + 5, 1], [2**64 + 5, 1], [2**63 + 5, None], [-1, 2**63]])
def test_json_integers_beyond_64_bits_are_quarantined_and_storable(values: list, tmp_path: Path) -> None:
    source = tmp_path / "big.json"
    source.write_text(json.dumps([{"id": str(i), "amount": v} for i, v in enumerate(values)]))
    records = collected(source)
    result = validate_records(records, RecordSchema(id_column="id", types={"amount": "integer"}))
    big = next(v for v in values if v is not None and v > 2**62)
    assert [r.endswith(f"field 'amount' = '{big}' is out of range for a 64-bit integer")
            for r in result.quarantined[REASON]] == [True]
    write_frame(result.quarantined, str(tmp_path / "q.parquet"))  # the exact digits survive as text
    assert str(big) in [str(v) for v in pd.read_parquet(tmp_path / "q.parquet")["amount"]]


# 2. integer columns with a missing value


@pytest.mark.usefixtures("prefect_api")
def test_integer_ids_and_fields_with_missing_values_stay_integers(tmp_path: Path) -> None:
    source = tmp_path / "ids.json"
    source.write_text(json.dumps([{"id": 1, "name": "a", "n": 5}, {"id": None, "name": "b", "n": None},
                                  {"id": 12345678901234567, "name": "c", "n": 7}]))
    state = run_pipeline(source, template(tmp_path, n="integer"), tmp_path / "out", id_column="id",
                         settings=NO_MODEL, fmt="jsonl")
    assert state.is_completed(), state.message
    ids = assert_every_record_once(tmp_path / "out", state.result(), fmt="jsonl")
    assert ids["exported"] == ["1", "12345678901234567"]
    exported = jsonl(tmp_path / "out" / "exported.jsonl")
    assert [(r["id"], r["n"]) for r in exported] == [(1, 5), (12345678901234567, 7)]
    decided = [json.loads(line)["id"] for line in (tmp_path / "out" / "decisions.jsonl").open()]
    assert decided == ["1", "12345678901234567"]


def test_frames_keep_integers_exact_whatever_else_the_column_holds(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    rows = [{"a": 1, "b": 2**64, "c": 2**60 + 1, "d": 1.5, "e": True},
            {"a": None, "b": None, "c": 0.5, "d": 2, "e": None}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records = collected(source)
    assert str(records["a"].dtype) == "Int64" and records["a"].tolist()[0] == 1
    assert records["b"].tolist()[0] == 2**64  # beyond Int64: exact Python ints
    assert records["c"].tolist()[0] == 2**60 + 1  # a float would round it
    assert records["d"].tolist() == [1.5, 2.0]  # a number column stays numeric
    assert records["e"].tolist() == [True, None]


# 3. text for dates, Decimals, lists and structs


@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_parquet_dates_decimals_and_lists_export_as_written(fmt: str, tmp_path: Path) -> None:
    source = tmp_path / "typed.parquet"
    pq.write_table(pa.table({
        "id": ["a", "b"], "name": ["x", "y"],
        "d": pa.array([dt.date(2024, 1, 5), None], pa.date32()),
        "dec": pa.array([Decimal("1.10"), Decimal("12345678901234567890.12")], pa.decimal128(30, 2)),
        "lst": pa.array([[1, 2], []], pa.list_(pa.int64())),
    }), source)
    state = run_pipeline(source, template(tmp_path), tmp_path / "out", id_column="id", settings=NO_MODEL,
                         fmt=fmt)
    assert state.is_completed(), state.message
    path = tmp_path / "out" / f"exported.{fmt}"
    readers = {"jsonl": lambda: jsonl(path), "parquet": lambda: pq.read_table(path).to_pylist(),
               "csv": lambda: pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records")}
    exported = readers[fmt]()
    assert [r["d"] for r in exported] == ["2024-01-05", "" if fmt == "csv" else None]
    assert [r["dec"] for r in exported] == ["1.10", "12345678901234567890.12"]
    # JSON and Parquet hold a list as a list (Parquet's list<int64>); a CSV holds its JSON text.
    assert [r["lst"] for r in exported] == (["[1, 2]", "[]"] if fmt == "csv" else [[1, 2], []])
    if fmt == "parquet":
        assert pq.read_schema(path).field("lst").type == pa.list_(pa.int64())


def test_parquet_keeps_lists_of_one_scalar_type_as_lists(tmp_path: Path) -> None:
    """A `list[string]` answer (tags) was exported as its JSON text: a Parquet reader (pandas,
    DuckDB, Spark) got a string. Lists Arrow cannot hold exactly stay JSON text."""
    frame = pd.DataFrame({
        "tags": pd.Series([["robots", "retail"], None, []], dtype=object),
        "scores": pd.Series([np.array([1, 2]), (3,), [2**63 - 1]], dtype=object),
        "flags": pd.Series([[True], [False, True], None], dtype=object),
        "mixed": pd.Series([["a"], [1], None], dtype=object),  # one type across the column, or text
        "gaps": pd.Series([["a", None], ["b"], None], dtype=object),  # a missing item: text
        "huge": pd.Series([[2**64], [1], None], dtype=object),  # beyond int64: text
        "empty": pd.Series([[], [], None], dtype=object),  # no item type: text
    })
    url = str(tmp_path / "frame.parquet")
    write_frame(frame, url)
    schema = pq.read_schema(url)
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("scores").type == pa.list_(pa.int64())
    assert schema.field("flags").type == pa.list_(pa.bool_())
    assert {schema.field(c).type for c in ("mixed", "gaps", "huge", "empty")} == {pa.large_string()}
    # Read back as a later stage reads it: lists, not numpy arrays.
    again = read_frame(url).to_dict(orient="list")
    assert again["tags"] == [["robots", "retail"], None, []]
    assert again["scores"] == [[1, 2], [3], [2**63 - 1]]
    assert again["flags"] == [[True], [False, True], None]
    assert again["mixed"] == [["a"], [1], None] and again["gaps"] == [["a", None], ["b"], None]
    assert again["huge"] == [[2**64], [1], None] and again["empty"] == [[], [], None]


def test_storable_text_unwraps_numpy_dates_and_decimals() -> None:
    frame = pd.DataFrame({
        "at": pd.Series([dt.datetime(2024, 1, 5, 10, tzinfo=dt.UTC), "soon"], dtype=object),
        "st": pd.Series([{"x": np.int64(1), "y": np.float64(0.5), "d": dt.date(2024, 1, 5)},
                         {"x": [np.int64(2)], "y": Decimal("1.10")}], dtype=object),
        "arr": pd.Series([np.array([1, 2]), np.array(["a"])], dtype=object),
        # numpy's nanosecond times and durations: their .item() is a bare count of nanoseconds
        "times": pd.Series([np.array(["2024-01-05T10:30", "NaT"], dtype="datetime64[ns]"),
                            [np.timedelta64(90, "s"), dt.timedelta(hours=1)]], dtype=object),
    })
    text = to_storable(frame).to_dict(orient="records")
    assert text == [
        {"at": "2024-01-05T10:00:00+00:00", "st": '{"x": 1, "y": 0.5, "d": "2024-01-05"}', "arr": "[1, 2]",
         "times": '["2024-01-05T10:30:00", null]'},
        {"at": "soon", "st": '{"x": [2], "y": "1.10"}', "arr": '["a"]',
         "times": '["P0DT0H1M30S", "P0DT1H0M0S"]'},
    ]


# 4. JSONL precision and times


def test_jsonl_keeps_every_digit_and_writes_iso_times(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "pi": [3.141592653589793, 0.1],
        "big": [9007199254740993, 1],
        "ts": pd.to_datetime(["2024-01-05T10:00:00.123456Z", None], utc=True),
        "naive": pd.to_datetime(["2024-01-05 10:00:00", "2024-01-06 00:00:00"]),
        "n": pd.array([1, None], dtype="Int64"),
        "inf": [float("inf"), float("nan")],
    })
    write_frame(frame, str(tmp_path / "x.jsonl"), "jsonl")
    assert jsonl(tmp_path / "x.jsonl") == [
        {"pi": 3.141592653589793, "big": 9007199254740993, "ts": "2024-01-05T10:00:00.123456+00:00",
         "naive": "2024-01-05T10:00:00", "n": 1, "inf": None},
        {"pi": 0.1, "big": 1, "ts": None, "naive": "2024-01-06T00:00:00", "n": None, "inf": None},
    ]


# 5. quarantined records without an id


def test_quarantined_record_with_an_empty_id_is_traced_by_content_hash(tmp_path: Path) -> None:
    source = tmp_path / "ids.csv"
    source.write_text("id,name\n1,a\n,b\n  ,c\n")
    result = validate_records(collected(source), RecordSchema(id_column="id"))
    assert list(result.valid[ID]) == ["1"]
    ids = list(result.quarantined[ID])
    assert all(isinstance(i, str) and len(i) == 16 for i in ids) and len(set(ids)) == 2
    assert [r.endswith("id column 'id' is empty") for r in result.quarantined[REASON]] == [True, True]


def test_content_id_does_not_depend_on_the_other_rows(tmp_path: Path) -> None:
    """A missing value is None in one column and NaN in another, depending on its neighbours."""
    alone, mixed = tmp_path / "alone.json", tmp_path / "mixed.json"
    alone.write_text(json.dumps([{"name": "b", "note": None}]))
    mixed.write_text(json.dumps([{"name": "b", "note": None}, {"name": "c", "note": "x"}]))
    schema = RecordSchema()
    a = validate_records(collected(alone), schema).valid[ID].tolist()
    m = validate_records(collected(mixed), schema).valid[ID].tolist()
    assert a[0] == m[0]


# 6. calendar dates


def test_date_fields_must_be_real_calendar_dates(tmp_path: Path) -> None:
    source = tmp_path / "dates.csv"
    source.write_text("id,born\n1,2024-13-45\n2,2023-02-29\n3,2024-01-05garbage\n4,2024-02-29\n"
                      "5,2024-01-05T10:00:00Z\n6,2024-01-05 25:00\n7,2024-01-05 10:00:00+02:00\n")
    result = validate_records(collected(source), RecordSchema(id_column="id", types={"born": "date"}))
    assert list(result.valid[ID]) == ["4", "5", "7"]
    assert list(result.quarantined[REASON]) == [
        "dates.csv:2: field 'born' = '2024-13-45' is not a valid date (month must be in 1..12)",
        "dates.csv:3: field 'born' = '2023-02-29' is not a valid date (day is out of range for month)",
        "dates.csv:4: field 'born' = '2024-01-05garbage' is not a valid date",
        "dates.csv:7: field 'born' = '2024-01-05 25:00' is not a valid date (hour must be in 0..23)",
    ]
    checks = {e["expectation"]: e["unexpected_count"] for e in result.expectations}
    assert checks["expect_column_values_to_be_calendar_dates"] == 4


def test_native_dates_and_times_pass_the_date_check(tmp_path: Path) -> None:
    source = tmp_path / "dates.parquet"
    pq.write_table(pa.table({
        "id": ["a", "b"],
        "born": pa.array([dt.date(2024, 1, 5), dt.date(2024, 2, 29)], pa.date32()),
        "at": pa.array([dt.datetime(2024, 1, 5, 10), None], pa.timestamp("us", tz="UTC")),
    }), source)
    schema = RecordSchema(id_column="id", types={"born": "date", "at": "date"})
    result = validate_records(collected(source), schema)
    assert list(result.valid[ID]) == ["a", "b"] and result.quarantined.empty
    write_frame(result.valid, str(tmp_path / "v.jsonl"), "jsonl")
    assert [(r["born"], r["at"]) for r in jsonl(tmp_path / "v.jsonl")] == [
        ("2024-01-05", "2024-01-05T10:00:00+00:00"), ("2024-02-29", None)]


# 7. booleans with gaps, and CSV cells written as JSONL writes values


def bools() -> pd.DataFrame:
    return pd.DataFrame({
        "gaps": pd.Series([True, None, False], dtype=object),  # as a source with a missing value gives it
        "full": [True, False, True],
        "mixed": pd.Series([True, "maybe", None], dtype=object),
    })


def test_booleans_with_gaps_stay_nullable_booleans_in_parquet_and_jsonl(tmp_path: Path) -> None:
    write_frame(bools(), str(tmp_path / "b.parquet"))
    table = pq.read_table(tmp_path / "b.parquet")
    assert [pa.types.is_boolean(table.schema.field(c).type) for c in ("gaps", "full", "mixed")] == [
        True, True, False]
    assert table.select(["gaps", "full", "mixed"]).to_pydict() == {
        "gaps": [True, None, False], "full": [True, False, True], "mixed": ["true", "maybe", None]}
    write_frame(bools(), str(tmp_path / "b.jsonl"), "jsonl")
    # JSON holds a column of mixed kinds value by value, as they are.
    assert jsonl(tmp_path / "b.jsonl") == [{"gaps": True, "full": True, "mixed": True},
                                           {"gaps": None, "full": False, "mixed": "maybe"},
                                           {"gaps": False, "full": True, "mixed": None}]


@pytest.mark.usefixtures("prefect_api")
def test_a_boolean_field_with_gaps_exports_as_a_boolean_column(tmp_path: Path) -> None:
    source = tmp_path / "flags.jsonl"
    source.write_text('{"id": "1", "name": "a", "ok": true}\n{"id": "2", "name": "b"}\n'
                      '{"id": "3", "name": "c", "ok": false}\n')
    state = run_pipeline(source, template(tmp_path), tmp_path / "out", id_column="id", settings=NO_MODEL)
    assert state.is_completed(), state.message
    exported = pq.read_table(tmp_path / "out" / "exported.parquet")
    assert pa.types.is_boolean(exported.schema.field("ok").type)
    assert exported.column("ok").to_pylist() == [True, None, False]


def test_csv_cells_are_written_as_jsonl_writes_the_values(tmp_path: Path) -> None:
    """pandas writes `2024-01-02 03:04:05` and `True` into a CSV; JSONL has ISO 8601 and true."""
    frame = bools().assign(
        naive=pd.to_datetime(["2024-01-02 03:04:05", None, "2024-01-03 00:00:00"]),
        offset=pd.to_datetime(["2024-01-02T03:04:05+02:00", None, "2024-01-03T00:00:00.500000+02:00"],
                              format="ISO8601"),
        utc=pd.to_datetime(["2024-01-02T03:04:05Z", None, None], utc=True),
        wait=pd.to_timedelta(["90s", None, "1h"]),
    )
    write_frame(frame, str(tmp_path / "x.csv"), "csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "x.csv").read_text())))
    assert rows == [
        {"gaps": "true", "full": "true", "mixed": "true", "naive": "2024-01-02T03:04:05",
         "offset": "2024-01-02T03:04:05+02:00", "utc": "2024-01-02T03:04:05+00:00", "wait": "P0DT0H1M30S"},
        {"gaps": "", "full": "false", "mixed": "maybe", "naive": "", "offset": "", "utc": "", "wait": ""},
        {"gaps": "false", "full": "true", "mixed": "", "naive": "2024-01-03T00:00:00",
         "offset": "2024-01-03T00:00:00.500000+02:00", "utc": "", "wait": "P0DT1H0M0S"},
    ]
    write_frame(frame, str(tmp_path / "x.jsonl"), "jsonl")  # times: the same text as in JSONL
    times = ("naive", "offset", "utc", "wait")
    assert [[r[c] for c in times] for r in rows] == [[r[c] or "" for c in times]
                                                     for r in jsonl(tmp_path / "x.jsonl")]
