"""The review seam: a run pauses for a decision and the export follows it exactly."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from uuid import UUID

import httpx
import pandas as pd
import pytest
from prefect.client.orchestration import get_client

from augment_it.settings import ProcessSettings
from tests.conftest import EXAMPLES
from tests.pipeline import BackgroundRun, assert_every_record_once, paused_review_run, resume

pytestmark = pytest.mark.usefixtures("prefect_api")
COMPANIES = EXAMPLES / "data" / "companies.csv"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"


def test_pause_then_resume_through_the_api_rejects_exactly_those_ids(tmp_path: Path) -> None:
    started = time.time()
    run = BackgroundRun(COMPANIES, TEMPLATE, tmp_path, review_policy="ui", id_column="company_id",
                        settings=ProcessSettings(provider="none"))
    run.start()
    run_id = asyncio.run(paused_review_run(after=started))
    pending = json.loads((tmp_path / ".augment" / "review" / "pending.json").read_text())
    assert pending["flow_run_id"] == str(run_id)

    asyncio.run(resume(run_id, {"approve": True, "reject_ids": ["c002", "c005"],
                                "reviewer": "Grace", "comment": "too vague"}))
    run.join(120)
    assert run.state is not None and run.state.is_completed(), run.state
    summary = run.state.result()
    ids = assert_every_record_once(tmp_path, summary)
    assert sorted(ids["rejected"]) == ["c002", "c005"]
    assert sorted(ids["exported"]) == ["c001", "c003", "c004", "c008"]
    assert sorted(ids["quarantined"]) == ["c006", "c007"]
    exported = pd.read_parquet(tmp_path / "exported.parquet")
    assert set(exported["reviewed_by"]) == {"Grace"} and set(exported["review_status"]) == {"approved"}


def test_an_invalid_decision_pauses_again_and_loses_nothing(tmp_path: Path) -> None:
    started = time.time()
    run = BackgroundRun(COMPANIES, TEMPLATE, tmp_path, review_policy="cli", id_column="company_id",
                        settings=ProcessSettings(provider="none"))
    run.start()
    run_id = asyncio.run(paused_review_run(after=started))
    asyncio.run(resume(run_id, {"approve": True, "reject_ids": ["no-such-id"], "reviewer": "Ada"}))
    again = asyncio.run(paused_review_run(after=started))
    assert again == run_id  # the same run waits again instead of failing
    asyncio.run(resume(run_id, {"approve": False, "reviewer": "Ada", "comment": "not this batch"}))
    run.join(120)
    summary = run.state.result()
    ids = assert_every_record_once(tmp_path, summary)
    assert ids["exported"] == [] and len(ids["rejected"]) == 6


def test_an_invalid_edit_is_reported_in_the_next_form_and_only_the_valid_one_applies(tmp_path: Path) -> None:
    from augment_it.cli.review_client import submit
    from augment_it.review import RecordEdit, ReviewInput

    started = time.time()
    run = BackgroundRun(COMPANIES, TEMPLATE, tmp_path, review_policy="ui", id_column="company_id",
                        settings=ProcessSettings(provider="none"))
    run.start()
    run_id = asyncio.run(paused_review_run(after=started))
    invalid = ReviewInput(reject_ids=["c003"], reviewer="Ada", edits=[
        RecordEdit(id="c001", field="colour", value="red"), RecordEdit(id="c404", field="name", value="X"),
        RecordEdit(id="c002", field="employees", value="lots")])
    asyncio.run(submit(str(run_id), invalid))
    asyncio.run(wait_for_pause_number(run_id, 2))
    description = asyncio.run(form_description(run_id))
    assert description.startswith("**The last submission could not be used, nothing was applied:**")
    assert "- record field 'colour' does not exist" in description
    assert "- unknown id 'c404' in edits" in description
    assert "- 'lots' is not a valid int64 for field 'employees' of record 'c002'" in description
    assert "## Review the augmented records" in description  # the packet is still there
    assert (tmp_path / ".augment" / "review" / "pending.json").exists()
    assert not (tmp_path / ".augment" / "review" / "decision.json").exists()  # nothing decided yet

    valid = ReviewInput(reject_ids=["c005"], reviewer="Ada",
                        edits=[RecordEdit(id="c001", field="name", value="Acme Robotics AB")])
    asyncio.run(submit(str(run_id), valid))
    run.join(120)
    assert run.state is not None and run.state.is_completed(), run.state
    ids = assert_every_record_once(tmp_path, run.state.result())
    assert ids["rejected"] == ["c005"]  # c003 from the refused submission is not rejected
    assert sorted(ids["exported"]) == ["c001", "c002", "c003", "c004", "c008"]
    exported = pd.read_parquet(tmp_path / "exported.parquet").set_index("_id")
    assert exported.loc["c001", "name"] == "Acme Robotics AB" and exported.loc["c002", "employees"] == 45
    log = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [row for row in log if row["action"] == "edit"] == [
        {"id": "c001", "action": "edit", "field": "name", "before": "Acme Robotics",
         "after": "Acme Robotics AB", "reviewer": "Ada", "source": "human", "at": log[0]["at"]}]


async def wait_for_pause_number(run_id: UUID, number: int, timeout: float = 60) -> None:
    """Wait until the run is paused for the NUMBER-th time (its pause key counts pauses)."""
    deadline = time.time() + timeout
    async with get_client() as client:
        while time.time() < deadline:
            state = (await client.read_flow_run(run_id)).state
            if state and state.is_paused() and state.state_details.pause_key == str(number):
                return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"run {run_id} did not pause a {number}th time")


async def form_description(run_id: UUID) -> str:
    async with get_client() as client:
        state = (await client.read_flow_run(run_id)).state
        keyset = state.state_details.run_input_keyset
        for _ in range(60):
            try:
                return json.loads(await client.read_flow_run_input(run_id, keyset["description"]))
            except httpx.HTTPStatusError:
                await asyncio.sleep(0.5)
    raise TimeoutError("the paused run saved no form description")


def test_an_edit_naming_no_label_is_refused_by_the_paused_run_itself(tmp_path: Path) -> None:
    """The Prefect UI's form (or any REST client) reaches the run without the CLI's checks."""
    from augment_it.cli.review_client import submit
    from augment_it.review import RecordEdit, ReviewInput

    template = tmp_path / "sector.yaml"
    template.write_text("name: sector\nmodel: gpt-4o-mini\nprompt: 'Sector of {{ name }}'\n"
                        "output: {sector: [robotics, food]}\n")
    started = time.time()
    run = BackgroundRun(COMPANIES, template, tmp_path / "out", review_policy="ui", id_column="company_id",
                        settings=ProcessSettings(provider="none"))
    run.start()
    run_id = asyncio.run(paused_review_run(after=started))
    assert "`sector` one of: robotics, food" in asyncio.run(form_description(run_id))
    typo = RecordEdit(id="c001", field="sector", value="robotic")
    asyncio.run(submit(str(run_id), ReviewInput(reviewer="Ada", edits=[typo])))
    asyncio.run(wait_for_pause_number(run_id, 2))
    assert ("- 'robotic' is not a label of field 'sector' (record 'c001'): use one of robotics, food, "
            "or leave it blank") in asyncio.run(form_description(run_id))
    fixed = RecordEdit(id="c001", field="sector", value="ROBOTICS")
    asyncio.run(submit(str(run_id), ReviewInput(reviewer="Ada", edits=[fixed])))
    run.join(120)
    assert run.state is not None and run.state.is_completed(), run.state
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet").set_index("_id")
    assert exported.loc["c001", "sector"] == "robotics"
