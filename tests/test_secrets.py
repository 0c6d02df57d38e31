"""Connector tokens never show up in logs, artifacts, flow-run records, output files or errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from augment_it.sources import open_source
from augment_it.sources.airtable import AirtableSettings
from tests.standins.airtable import AirtableStandin
from tests.standins.databricks import DatabricksStandin
from tests.standins.nocodb import NocoDBStandin

AIRTABLE_TOKEN = "patSECRET.airtable-7c1e5a9b3d"
NOCODB_TOKEN = "SECRET-nocodb-4f2a8e6c"
DATABRICKS_TOKEN = "dapiSECRET-databricks-9b7d"
SECRETS = (AIRTABLE_TOKEN, NOCODB_TOKEN, DATABRICKS_TOKEN)
FIELDS = {"name": "singleLineText", "summary": "multilineText", "word_count": "number",
          "reading_time_min": "number", "language": "singleSelect", "quality_score": "number"}


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG (SDKs, HTTP clients, Prefect), captured here and sent to the API."""
    names = ["", "prefect", "prefect.flow_runs", "prefect.task_runs", "urllib3", "httpx", "httpcore",
             "databricks", "databricks.sdk", "pyairtable"]
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a token leaked into {where}"


async def everything_prefect_kept() -> str:
    """Logs, artifacts, flow-run parameters and state messages, as the API serves them to the UI."""
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    # The server records task runs in batches (prefect.toml): let its last flush happen first.
    await asyncio.sleep(get_current_settings().server.services.task_run_recorder.flush_interval + 1)
    async with get_client() as client:
        logs = await client.read_logs()
        artifacts = await client.read_artifacts()
        runs = await client.read_flow_runs()
        task_runs = await client.read_task_runs()
    parts = [log.message for log in logs]
    parts += [str(a.data) + str(a.description) for a in artifacts]
    parts += [str(run.parameters) + str(run.state.message if run.state else "") for run in runs]
    parts += [str(run.state.message if run.state else "") for run in task_runs]
    return "\n".join(parts)


def test_settings_and_blocks_mask_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from blocks.connectors import AirtableConnection, DatabricksConnection, NocoDBConnection

    settings = AirtableSettings(api_key=AIRTABLE_TOKEN)
    blocks = [AirtableConnection(api_key=AIRTABLE_TOKEN), NocoDBConnection(api_token=NOCODB_TOKEN),
              DatabricksConnection(host="https://example.cloud.databricks.com", token=DATABRICKS_TOKEN)]
    for thing in [settings, *blocks, *(b.to_settings() for b in blocks)]:
        assert_no_secret(repr(thing) + str(thing) + str(thing.model_dump()), type(thing).__name__)
    assert blocks[0].to_settings().api_key.get_secret_value() == AIRTABLE_TOKEN


def test_connector_errors_and_sdk_debug_logs_hold_no_token(debug_logging: pytest.LogCaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from augment_it.errors import UserInputError

    with NocoDBStandin(token=NOCODB_TOKEN) as nocodb, DatabricksStandin(token=DATABRICKS_TOKEN) as databricks:
        table = nocodb.add_table("pBase", "T", {"name": "SingleLineText"}, [{"name": "a"}])
        databricks.add_table("dev.crm.t", {"id": "BIGINT", "name": "VARCHAR"}, [{"id": 1, "name": "a"}])
        monkeypatch.setenv("NOCODB_URL", nocodb.url)
        monkeypatch.setenv("NOCODB_API_TOKEN", NOCODB_TOKEN)
        monkeypatch.setenv("DATABRICKS_HOST", databricks.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", DATABRICKS_TOKEN)
        monkeypatch.setenv("DATABRICKS_WAREHOUSE_ID", databricks.warehouse_id)
        assert len(open_source(f"nocodb://{table.id}").read().records) == 1
        assert len(open_source("databricks://dev.crm.t").read().records) == 1
        errors = []
        for failing in ("databricks://dev.crm.missing", "nocodb://mMissing"):
            with pytest.raises(UserInputError) as caught:
                open_source(failing).read()
            errors.append(caught.value)
        nocodb.token = databricks.token = "rotated"  # the servers now refuse the tokens we send
        for failing in ("databricks://dev.crm.t", f"nocodb://{table.id}"):
            with pytest.raises(UserInputError) as caught:
                open_source(failing).read()
            errors.append(caught.value)
    for error in errors:
        assert_no_secret(f"{error!r} {error} {error.__cause__!r} {error.__context__!r}", "an exception")
    assert debug_logging.records, "debug logging was captured"
    assert_no_secret(debug_logging.text, "captured logs")


@pytest.mark.slow
def test_pipeline_with_airtable_block_keeps_the_token_out_of_everything(
        prefect_api: None, debug_logging: pytest.LogCaptureFixture, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from blocks.connectors import AirtableConnection
    from tests.pipeline import run_pipeline

    monkeypatch.delenv("AIRTABLE_API_KEY", raising=False)
    template = tmp_path / "t.yaml"
    template.write_text("name: profile\nprovider: none\nmodel: none\nprompt: 'Describe {{ name }}'\n"
                        "output:\n  summary: string\n")
    with AirtableStandin(token=AIRTABLE_TOKEN) as airtable:
        names = [{"name": f"Company {i}"} for i in range(3)]
        table = airtable.add_table("appBase", "Companies", FIELDS, names)
        AirtableConnection(api_key=AIRTABLE_TOKEN, endpoint_url=airtable.url).save("crm-test", overwrite=True)
        uri = "airtable://appBase/Companies?block=crm-test"
        state = run_pipeline(uri, template, tmp_path / "ok", destination=uri)
        assert state.is_completed(), state.message
        assert state.result()["destination"]["updated"] == 3
        assert all("word_count" in r["fields"] for r in table.records.values())

        airtable.token = "rotated"  # the same block now holds a refused token
        failed = run_pipeline(uri, template, tmp_path / "refused", destination=uri)
    assert failed.is_failed()
    assert "401 AUTHENTICATION_REQUIRED" in failed.message

    assert_no_secret(str(state.message) + str(failed.message), "state messages")
    assert_no_secret(debug_logging.text, "captured logs")
    out = capfd.readouterr()
    assert_no_secret(out.out + out.err, "stdout/stderr")
    kept = asyncio.run(everything_prefect_kept())
    assert "401 AUTHENTICATION_REQUIRED" in kept and "# Destination" in kept, "the grep sees the UI's data"
    assert_no_secret(kept, "Prefect logs, artifacts or flow runs")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", errors="replace")
            if path.suffix == ".parquet":
                text += pd.read_parquet(path).to_csv()
            assert_no_secret(text, str(path))
