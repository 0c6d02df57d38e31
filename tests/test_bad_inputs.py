"""The bad-input corpus through the whole pipeline: a clear error or quarantined records, never a
traceback, never a lost record."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from augment_it.settings import ProcessSettings
from tests.conftest import DATA, EXAMPLES
from tests.pipeline import assert_every_record_once, run_pipeline

pytestmark = pytest.mark.usefixtures("prefect_api")
BAD = DATA / "bad"
ODD = DATA / "odd"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"
PLAIN = BAD / "plain.yaml"
NO_MODEL = ProcessSettings(provider="none")


@pytest.fixture(scope="module", autouse=True)
def plain_template() -> None:
    PLAIN.write_text("name: plain\nmodel: m\nprompt: 'About {{ name }}'\n")
    yield
    PLAIN.unlink()


@pytest.mark.parametrize(("source", "id_column", "quarantined", "reason"), [
    ("truncated.csv", "id", [None, None], "truncated.csv:3: row has 2 fields, the header has 3"),
    ("invalid-utf8.csv", "id", [None], "field 'name' is not valid UTF-8"),
    ("missing-id-column.csv", "id", [None, None], "column 'id' is missing from the source"),
    ("duplicate-ids.csv", "id", ["1", "1"], "duplicate id '1'"),
    ("notes-broken", "id", [None], "broken.md: front matter is not valid YAML"),
    ("records.jsonl", "id", [None, None], "records.jsonl:2: not valid JSON"),
    (ODD / "nested-latin1.jsonl", "id", [None, None, None], "field 'tags' is not valid UTF-8"),
    (ODD / "stray-quote.csv", "id", [None, None], "stray-quote.csv line 3: ',' expected after"),
    (ODD / "notes-odd", "id", [None, None], "list-front-matter.md: front matter must be a mapping"),
])
def test_bad_rows_are_quarantined_with_a_reason(source: str, id_column: str, quarantined: list,
                                                reason: str, tmp_path: Path) -> None:
    state = run_pipeline(BAD / source, PLAIN, tmp_path, id_column=id_column, settings=NO_MODEL)
    assert state.is_completed(), state.message
    ids = assert_every_record_once(tmp_path, state.result())
    frame = pd.read_parquet(tmp_path / "quarantined.parquet")
    assert len(frame) == len(quarantined) == len(ids["quarantined"])
    assert [q for q in quarantined if q] == [i for i in frame["_id"] if i in quarantined]
    assert any(reason in r for r in frame["_reason"]), list(frame["_reason"])
    assert all(frame["_reason"].str.len() > 0)


@pytest.mark.parametrize(("source", "message"), [
    ("empty.csv", "is empty: no header and no records"),
    ("alias-bomb.yaml", "alias bomb"),
    (ODD / "latin1-header.csv", "latin1-header.csv: header column 2 ('na\ufffdme') is not valid UTF-8"),
])
def test_unreadable_sources_stop_with_one_clear_sentence(source: str, message: str, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    state = run_pipeline(BAD / source, PLAIN, tmp_path, settings=NO_MODEL)
    assert state.is_failed()
    assert state.message.startswith("collect stage: ") and message in state.message
    assert "Traceback" not in state.message
    # Prefect logs the Failed task with exc_info=True and no exception: "NoneType: None" under it.
    assert any(r.name == "prefect.task_runs" and r.levelname == "ERROR" for r in caplog.records)
    assert "NoneType: None" not in caplog.text


def test_cli_prints_the_error_and_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    result = CliRunner().invoke(app, ["run", str(BAD / "nope.csv"), "-t", str(TEMPLATE),
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "does not exist" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "data" / "companies.csv"), "-t",
                                      str(BAD / "not-json-answer.txt"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "a template is a mapping" in result.output


@pytest.mark.parametrize("source", ["empty.csv", ODD / "latin1-header.csv"])
def test_cli_tells_what_is_wrong_with_a_small_file_before_any_flow(source: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A repeated header or an empty file was told only after a temporary Prefect server had started
    (some 8 s), and Prefect logged it four times at ERROR above the CLI's one line."""
    from typer.testing import CliRunner

    from augment_it.cli import run
    from augment_it.cli.main import app

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # a flow that started would fail here
    result = CliRunner().invoke(app, ["run", str(BAD / source), "-t", str(PLAIN), "--provider", "none",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and "Prefect" not in result.output, result.output
    assert not (tmp_path / "out").exists(), "a flow ran before the source was read"
    monkeypatch.setattr(run, "PREFLIGHT_READ_BYTES", -1)  # a bigger file is not read twice: the run tells
    run.read_if_small(run.open_source(str(BAD / source)))


def test_reading_a_small_file_ahead_says_nothing_the_run_will_say() -> None:
    from augment_it.cli import run

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its notice (an unnamed column dropped) is the run's to log
        run.read_if_small(run.open_source(str(ODD / "excel-trailing-comma.csv")))


def test_cli_refuses_a_parameter_the_chosen_provider_would_refuse_before_any_flow(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    template = tmp_path / "warm.yaml"
    template.write_text("name: warm\nprovider: openai\nmodel: m\ntemperature: 1.5\n"
                        "prompt: 'About {{ name }}'\n")
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "data" / "companies.csv"), "-t", str(template),
                                      "--provider", "anthropic", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "temperature 1.5 is outside 0.0-1.0" in result.output and "anthropic" in result.output
    assert not (tmp_path / "out").exists(), "a flow ran before the template was checked"


@pytest.mark.parametrize(("destination", "message"), [
    ("mongodb://crm/companies", "cannot write to 'mongodb://crm/companies': destinations are airtable://"),
    ("airtable://appXXXXXXXXXXXXXX/Companies", "api_key (AIRTABLE_API_KEY)"),
])
def test_cli_refuses_a_destination_it_could_not_write_before_any_flow(
        destination: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to be found out at export, after the model was paid and the reviewer had decided."""
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    monkeypatch.delenv("AIRTABLE_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "data" / "companies.csv"), "-t", str(TEMPLATE),
                                      "--to", destination, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "out").exists(), "a flow ran before the destination was checked"


@pytest.mark.parametrize(("option", "message"), [
    (["--rpm", "0"], "--rpm 0.0: Input should be greater than 0"),  # 0 paced nothing at all
    (["--tpm", "-5"], "--tpm -5.0: Input should be greater than 0"),
    (["--timeout", "0"], "--timeout 0.0: Input should be greater than 0"),  # every call timed out
])
def test_cli_refuses_call_limits_that_cannot_work(option: list[str], message: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from augment_it.calling import CallPolicy
    from augment_it.cli.main import app

    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "data" / "companies.csv"), "-t", str(TEMPLATE),
                                      "--out", str(tmp_path / "out"), *option])
    assert result.exit_code == 2 and message in result.output, result.output
    with pytest.raises(ValidationError):  # a deployment's parameters are checked alike
        CallPolicy(concurrency=0)


def test_cli_refuses_an_out_that_is_a_file_before_any_flow(tmp_path: Path) -> None:
    """The collect stage failed on it with NotADirectoryError, after starting a Prefect server."""
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    out = tmp_path / "results.csv"
    out.write_text("kept\n")
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "data" / "companies.csv"), "-t", str(TEMPLATE),
                                      "--out", str(out)])
    assert result.exit_code == 2 and f"--out {out} is a file; name a folder" in result.output, result.output
    assert out.read_text() == "kept\n"


@pytest.mark.parametrize(("prices", "message"), [
    ("gpt-4o-mini: {input: 0.15, output: 0.60, cached-input: 0.07}\n",
     "model 'gpt-4o-mini': cached-input: Extra inputs are not permitted"),  # a typo does not vanish
    ("my-model: {input: -1, output: 2}\n", "model 'my-model': input: Input should be greater than"),
    ("- gpt-4o-mini\n", "expected models mapped to prices"),
    (None, "does not exist"),
])
def test_cli_refuses_an_unusable_price_file_before_any_flow(prices: str | None, message: str,
                                                            tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    price_file = tmp_path / "prices.yaml"
    if prices is not None:
        price_file.write_text(prices)
    result = CliRunner().invoke(app, ["run", str(EXAMPLES / "data" / "companies.csv"), "-t", str(TEMPLATE),
                                      "--prices", str(price_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert f"price file {price_file}" in result.output and message in result.output
    assert not (tmp_path / "out").exists(), "a flow ran before the price file was checked"


def test_a_deployed_run_with_an_unusable_price_file_stops_before_any_call(llm, tmp_path: Path) -> None:
    """Without the CLI's check (a deployment run from the UI), the process stage checks it first."""
    price_file = tmp_path / "prices.yaml"
    price_file.write_text("gpt-4o-mini: {input: 0.15}\n")
    state = run_pipeline(EXAMPLES / "data" / "companies.csv", TEMPLATE, tmp_path / "out",
                         id_column="company_id", settings=ProcessSettings(prices_path=str(price_file)))
    assert state.is_failed()
    assert state.message == (f"process stage: price file {price_file}, model 'gpt-4o-mini': "
                             "output: Field required")
    assert llm.total_requests == 0


def test_a_deployed_run_with_a_destination_it_cannot_write_stops_before_any_call(llm, tmp_path: Path) -> None:
    """It failed at export, after the model had been paid for every record."""
    state = run_pipeline(EXAMPLES / "data" / "companies.csv", TEMPLATE, tmp_path / "out",
                         id_column="company_id", destination="airtable://appNOTABASE")
    assert state.is_failed()
    assert "airtable://appNOTABASE" in state.message and llm.total_requests == 0
    assert not (tmp_path / "out" / ".augment").exists()


def test_cli_error_keeps_a_long_odd_path_whole_on_one_line(tmp_path: Path) -> None:
    """Rich would wrap at 80 columns and read `[...]` as markup; a path must survive both."""
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    missing = tmp_path / ("deep-folder-" * 8) / "[q3] companies.csv"
    result = CliRunner().invoke(app, ["run", str(missing), "-t", str(TEMPLATE), "--out", str(tmp_path)])
    assert result.exit_code == 2
    line = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert str(missing) in line and "does not exist" in line


@pytest.mark.parametrize(("source", "ids"), [
    (ODD / "stray-quote.csv", ["1", "3", "5"]),
    (ODD / "line-separators.jsonl", ["1", "2", "4"]),
    (ODD / "multi-document.yaml", ["1", "2", "3"]),
    (ODD / "wrapped.json", ["1", "2"]),
    (ODD / "semicolon.csv", ["1", "2"]),
    (ODD / "excel-trailing-comma.csv", ["1", "2"]),
    (ODD / "yaml-1.1.yaml", ["007", "008"]),
])
def test_odd_but_readable_files_lose_no_record(source: Path, ids: list[str], tmp_path: Path) -> None:
    state = run_pipeline(source, PLAIN, tmp_path, id_column="id", settings=NO_MODEL)
    assert state.is_completed(), state.message
    outcomes = assert_every_record_once(tmp_path, state.result())
    assert sorted(i for name in ("exported", "rejected", "failed") for i in outcomes[name]) == ids


def test_a_field_named_like_our_own_columns_is_quarantined_and_an_own_id_is_the_id(tmp_path: Path) -> None:
    from augment_it.sources import RESERVED

    source = tmp_path / "export.json"  # as a MongoDB export looks: its own `_id`
    source.write_text('[{"_id": "a1", "name": "Acme", "_row": "mine"}, {"_id": "b2", "name": "Beta"},'
                      ' {"_id": "c3", "name": "Core", "_cost_usd": 4}]')
    state = run_pipeline(source, PLAIN, tmp_path / "out", settings=NO_MODEL)
    ids = assert_every_record_once(tmp_path / "out", state.result())
    assert ids["exported"] == ["b2"] and len(ids["quarantined"]) == 2
    quarantined = pd.read_parquet(tmp_path / "out" / "quarantined.parquet").set_index("_source")
    assert quarantined.loc["export.json[0]", "_reason"] == ("export.json[0]: field '_row' has a name "
                                                            "augment-it uses for its own columns; rename it "
                                                            "in the source")
    assert '"_row": "mine"' in quarantined.loc["export.json[0]", "raw"]  # nothing lost
    assert "'_cost_usd'" in quarantined.loc["export.json[2]", "_reason"]
    # Every column augment-it adds with its prefix is one a source may not bring.
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet")
    assert {c for c in exported.columns if c.startswith("_")} - {"_id"} <= RESERVED


def test_what_a_source_only_warns_about_reaches_the_run_log(caplog: pytest.LogCaptureFixture,
                                                            tmp_path: Path) -> None:
    state = run_pipeline(ODD / "excel-trailing-comma.csv", PLAIN, tmp_path, id_column="id", settings=NO_MODEL)
    assert state.is_completed()
    logged = [r for r in caplog.records if r.name.startswith("prefect.") and r.levelname == "WARNING"]
    assert any("dropped 1 unnamed column(s) at the end of the header" in r.getMessage() for r in logged)


def test_a_file_in_a_legacy_encoding_reaches_the_export_in_the_encoding_named(tmp_path: Path) -> None:
    source = tmp_path / "people.csv"  # as Excel's plain "CSV" saves it on Western European Windows
    source.write_bytes("id,name\r\n1,Zoë Müller\r\n2,Ada\r\n".encode("cp1252"))
    state = run_pipeline(source, PLAIN, tmp_path / "utf8", id_column="id", settings=NO_MODEL)
    ids = assert_every_record_once(tmp_path / "utf8", state.result())
    assert ids["exported"] == ["2"] and len(ids["quarantined"]) == 1
    reason = pd.read_parquet(tmp_path / "utf8" / "quarantined.parquet")["_reason"][0]
    assert "the file is not UTF-8: name its encoding (--encoding cp1252" in reason
    from typer.testing import CliRunner

    from augment_it.cli.main import app

    command = ["run", str(source), "-t", str(PLAIN), "--provider", "none", "--id-column", "id",
               "--out", str(tmp_path / "named")]
    refused = CliRunner().invoke(app, [*command, "--encoding", "klingon"])
    assert refused.exit_code == 2 and "unknown text encoding 'klingon'" in refused.output
    result = CliRunner().invoke(app, [*command, "--encoding", "windows-1252"])
    assert result.exit_code == 0, result.output
    exported = pd.read_parquet(tmp_path / "named" / "exported.parquet")
    assert list(exported["name"]) == ["Zoë Müller", "Ada"]
