"""A review nobody answers: the run ends as ReviewExpired and the chosen outcome applies."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun

from augment_it.settings import ProcessSettings
from flows.review import EXPIRED, SERVER_GRACE
from tests.conftest import EXAMPLES
from tests.pipeline import BackgroundRun, assert_every_record_once, paused_review_run, resume, run_pipeline

pytestmark = pytest.mark.usefixtures("prefect_api")
COMPANIES = EXAMPLES / "data" / "companies.csv"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"


async def last_review_run(after: float) -> FlowRun:
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["review"])))
    return max((r for r in runs if r.created and r.created.timestamp() >= after - 1), key=lambda r: r.created)


def test_by_default_an_expired_review_exports_nothing_and_says_so(tmp_path: Path) -> None:
    started = time.time()
    state = run_pipeline(COMPANIES, TEMPLATE, tmp_path, review_policy="ui", review_timeout=3,
                         id_column="company_id", settings=ProcessSettings(provider="none"))
    assert state.is_completed(), state
    ids = assert_every_record_once(tmp_path, state.result())
    assert ids["exported"] == [] and len(ids["rejected"]) == 6

    review_run = asyncio.run(last_review_run(started))
    assert review_run.state.name == "ReviewExpired"
    assert review_run.state.message.startswith("review expired: nobody decided within 3 s")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["review"]["status"] == "review expired"
    assert "timeout outcome: reject-all" in summary["review"]["comment"]
    rejected = pd.read_parquet(tmp_path / "rejected.parquet")
    assert set(rejected["reviewed_by"]) == {"(review expired)"}


def test_approve_all_on_timeout_exports_what_was_waiting(tmp_path: Path) -> None:
    state = run_pipeline(COMPANIES, TEMPLATE, tmp_path, review_policy="ui", approve_above=0.6,
                         review_timeout=3, review_timeout_outcome="approve-all", id_column="company_id",
                         settings=ProcessSettings(provider="none"))
    ids = assert_every_record_once(tmp_path, state.result())
    assert len(ids["exported"]) == 6 and ids["rejected"] == []
    exported = pd.read_parquet(tmp_path / "exported.parquet").set_index("_id")
    assert set(exported.loc[["c001", "c002", "c004"], "reviewed_by"]) == {"auto"}
    assert set(exported.loc[["c003", "c005", "c008"], "reviewed_by"]) == {"(review expired)"}
    assert json.loads((tmp_path / "summary.json").read_text())["review"]["status"] == "review expired"


def test_a_decision_sent_after_the_last_poll_before_the_timeout_is_applied(tmp_path: Path) -> None:
    # With a 16 s timeout the pause polls every 4 s; a decision 1 s before the deadline reaches
    # the server after the last poll, so only the run leaving its pause can pick it up. (With 8 s,
    # a loaded machine found the run paused so late that its timeout had passed.)
    started = time.time()
    run = BackgroundRun(COMPANIES, TEMPLATE, tmp_path, review_policy="ui", review_timeout=16,
                        id_column="company_id", settings=ProcessSettings(provider="none"))
    run.start()
    run_id = asyncio.run(paused_review_run(started))

    async def resume_just_before_the_deadline() -> None:
        async with get_client() as client:
            paused = (await client.read_flow_run(run_id)).state
        deadline = paused.state_details.pause_timeout.timestamp() - SERVER_GRACE
        await asyncio.sleep(deadline - 1 - time.time())
        await resume(run_id, {"approve": True, "reject_ids": ["c002"], "reviewer": "Ada"})

    asyncio.run(resume_just_before_the_deadline())
    run.join(60)
    ids = assert_every_record_once(tmp_path, run.state.result())
    assert ids["rejected"] == ["c002"] and len(ids["exported"]) == 5
    review_run = asyncio.run(last_review_run(started))
    assert review_run.state.name != EXPIRED
    assert set(pd.read_parquet(tmp_path / "exported.parquet")["reviewed_by"]) == {"Ada"}
