"""`augment review` against a real Prefect server: list, show, sheet, approve with a filled-in sheet."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

from augment_it.cli.main import app
from augment_it.settings import ProcessSettings
from tests.conftest import EXAMPLES
from tests.pipeline import BackgroundRun, assert_every_record_once, paused_review_run

pytestmark = pytest.mark.usefixtures("prefect_api")
COMPANIES = EXAMPLES / "data" / "companies.csv"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"
runner = CliRunner()


def augment(*args: str) -> str:
    result = runner.invoke(app, ["review", *args])
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def test_list_show_sheet_then_approve_with_the_edited_sheet(tmp_path: Path) -> None:
    started = time.time()
    run = BackgroundRun(COMPANIES, TEMPLATE, tmp_path / "out", review_policy="cli", approve_above=0.6,
                        id_column="company_id", settings=ProcessSettings(provider="none"))
    run.start()
    run_id = str(asyncio.run(paused_review_run(after=started)))

    listing = augment("list")
    line = next(row for row in listing.splitlines() if row.startswith(run_id))
    # c001, c002, c004 score above 0.6: approved unseen; c003, c005, c008 wait for a human.
    assert line.split()[2:5] == ["3", "3", "3"], listing
    assert str(tmp_path / "out") in line

    shown = augment("show", run_id)
    assert "3 records to review, 3 flagged, 3 auto-approved (quality_score > 0.6), 0 failed" in shown
    assert [row.split()[0] for row in shown.splitlines() if row.startswith("c0")] == ["c005", "c003", "c008"]
    assert f"augment review approve {run_id}" in shown

    workbook = tmp_path / "sheet.xlsx"
    assert f"--edits {workbook}" in augment("sheet", run_id, "--xlsx", str(workbook))
    assert pd.read_excel(workbook, dtype=str)["id"].tolist() == ["c005", "c003", "c008"]
    sheet = pd.read_csv(pd.io.common.StringIO(augment("sheet", run_id)), dtype=str, keep_default_na=False)
    assert list(sheet["id"]) == ["c005", "c003", "c008"] and set(sheet["decision"]) == {"approve"}
    assert {"name", "website", "summary", "industry", "score"} <= set(sheet.columns)
    sheet.loc[sheet["id"] == "c005", "decision"] = "reject"
    sheet.loc[sheet["id"] == "c003", "summary"] = "Dashboards for logistics firms"
    sheet.loc[sheet["id"] == "c008", "employees"] = "80"
    edited = tmp_path / "sheet.csv"
    sheet.to_csv(edited, index=False)

    result = runner.invoke(app, ["review", "approve", run_id, "--edits", str(edited), "--reviewer", "Grace",
                                 "--comment", "checked in a spreadsheet"])
    assert result.exit_code == 0, result.output
    assert "1 rejected, 2 edits" in result.output
    run.join(120)
    assert run.state is not None and run.state.is_completed(), run.state

    out = tmp_path / "out"
    ids = assert_every_record_once(out, run.state.result())
    assert sorted(ids["exported"]) == ["c001", "c002", "c003", "c004", "c008"]
    assert ids["rejected"] == ["c005"]
    exported = pd.read_parquet(out / "exported.parquet").set_index("_id")
    assert exported.loc["c003", "summary"] == "Dashboards for logistics firms"
    assert exported.loc["c008", "employees"] == 80
    assert exported.loc["c003", "reviewed_by"] == "Grace" and exported.loc["c001", "reviewed_by"] == "auto"
    assert exported["reviewed_at"].notna().all() and set(exported["review_status"]) == {"approved"}

    log = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    edits = {(row["id"], row["field"]): row for row in log if row["action"] == "edit"}
    assert edits[("c003", "summary")]["before"] is None
    assert edits[("c003", "summary")]["after"] == "Dashboards for logistics firms"
    assert (edits[("c008", "employees")]["before"], edits[("c008", "employees")]["after"]) == (75, 80)
    assert {row["reviewer"] for row in edits.values()} == {"Grace"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["review"]["status"] == "reviewed" and summary["review"]["edits"] == 2


def test_reject_and_refusals_name_the_problem(tmp_path: Path) -> None:
    started = time.time()
    run = BackgroundRun(COMPANIES, TEMPLATE, tmp_path, review_policy="cli", id_column="company_id",
                        settings=ProcessSettings(provider="none"))
    run.start()
    run_id = str(asyncio.run(paused_review_run(after=started)))

    refused = runner.invoke(app, ["review", "approve", run_id, "--reject", "c999", "--reviewer", "Ada"])
    assert refused.exit_code == 2 and "unknown id 'c999' in reject_ids" in refused.output
    nameless = runner.invoke(app, ["review", "reject", run_id, "--reviewer", ""])
    assert nameless.exit_code == 2 and "reviewer" in nameless.output
    augment("reject", run_id, "--reviewer", "Ada", "--comment", "wrong template")
    run.join(120)
    ids = assert_every_record_once(tmp_path, run.state.result())
    assert ids["exported"] == [] and len(ids["rejected"]) == 6

    finished = runner.invoke(app, ["review", "reject", run_id, "--reviewer", "Ada"])
    assert finished.exit_code == 2 and "is not waiting for review (state: Completed)" in finished.output
    unknown = runner.invoke(app, ["review", "show", "00000000-0000-0000-0000-000000000000"])
    assert unknown.exit_code == 2 and "no flow run" in unknown.output


def test_an_edit_must_name_one_of_a_labelled_fields_labels(tmp_path: Path) -> None:
    """Labelling by hand where no model ran: a typo was exported as a label of its own."""
    template = tmp_path / "sector.yaml"
    template.write_text("name: sector\nmodel: gpt-4o-mini\nprompt: 'Sector of {{ name }}'\n"
                        "output:\n  sector: [robotics, food, software, health]\n"
                        "  sells: list[goods, services]\n")
    started = time.time()
    run = BackgroundRun(COMPANIES, template, tmp_path / "out", review_policy="cli", id_column="company_id",
                        settings=ProcessSettings(provider="none"))
    run.start()
    run_id = str(asyncio.run(paused_review_run(after=started)))
    assert ("An edit of a field of labels names them (sector one of: robotics, food, software, health; "
            "sells any of: goods, services)") in augment("show", run_id)
    edits = tmp_path / "edits.json"
    edits.write_text(json.dumps([{"id": "c001", "field": "sector", "value": "Robotcs"}]))
    refused = runner.invoke(app, ["review", "approve", run_id, "--edits", str(edits), "--reviewer", "Ada"])
    assert refused.exit_code == 2, refused.output
    assert ("'Robotcs' is not a label of field 'sector' (record 'c001'): use one of robotics, food, "
            "software, health, or leave it blank") in " ".join(refused.output.split())
    edits.write_text(json.dumps([{"id": "c001", "field": "sector", "value": "Robotics"},
                                 {"id": "c001", "field": "sells", "value": "Goods, services"}]))
    augment("approve", run_id, "--edits", str(edits), "--reviewer", "Ada")
    run.join(120)
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    assert exported.loc["c001", "sector"] == "robotics" and exported["sector"].drop("c001").isna().all()
    assert list(exported.loc["c001", "sells"]) == ["goods", "services"]  # a list, as the template declares


def test_without_a_reachable_server_the_commands_say_so() -> None:
    """Without PREFECT_API_URL, Prefect would start a temporary server that knows no run."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        unset = runner.invoke(app, ["review", "list"])
    assert unset.exit_code == 2 and "PREFECT_API_URL is not set" in unset.output
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        down = runner.invoke(app, ["review", "list"])
    assert down.exit_code == 2 and "cannot reach the Prefect server at http://127.0.0.1:9/api" in down.output


@pytest.mark.slow
def test_a_run_on_its_temporary_server_can_be_reviewed_from_another_shell(tmp_path: Path) -> None:
    """A run started without PREFECT_API_URL says where its temporary server is, and records it."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    # WARNING: the command says how to review itself, not only in the run's log at INFO.
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_LEVEL="WARNING")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "augment_it.cli.main"]
    run = subprocess.Popen([*command, "run", str(COMPANIES), "-t", str(TEMPLATE), "--id-column", "company_id",
                            "--provider", "none", "--review", "cli", "--out", str(out)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        pending = out / ".augment" / "review" / "pending.json"
        deadline = time.time() + 120
        while not pending.exists():
            assert run.poll() is None and time.time() < deadline, "the run ended before its review"
            time.sleep(0.2)
        request = json.loads(pending.read_text())
        assert request["api_url"].startswith("http://127.0.0.1:")
        # Its UI, where the review form is (Prefect's own temporary server serves none).
        page = httpx.get(f"{request['api_url'].removesuffix('/api')}/runs/flow-run/{request['flow_run_id']}",
                         headers={"Accept": "text/html"}, timeout=30)  # as a browser asks
        assert page.status_code == 200 and "<!DOCTYPE html>" in page.text
        approve = subprocess.run([*command, "review", "approve", request["flow_run_id"], "--reviewer", "Ada"],
                                 env={**env, "PREFECT_API_URL": request["api_url"]}, capture_output=True,
                                 text=True, timeout=120)
        assert approve.returncode == 0, approve.stdout + approve.stderr
        printed, _ = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, printed[-2000:]
    ui = request["api_url"].removesuffix("/api")
    assert f"use the Prefect UI at {ui} (this run's temporary server), or from a shell " \
        f"export PREFECT_API_URL={request['api_url']}, then `augment review show" in printed
    assert json.loads((out / "summary.json").read_text())["exported"] == 6

