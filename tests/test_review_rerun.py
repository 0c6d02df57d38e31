"""A rerun into the same --out asks the reviewer only about records that are new or changed."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from uuid import UUID

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from augment_it.cli.main import app
from augment_it.review import RecordEdit, ReviewDecision, apply_decision, auto_decision, decisions_to_keep
from augment_it.review_ledger import EarlierDecision, fingerprint
from augment_it.settings import ProcessSettings
from tests.conftest import EXAMPLES
from tests.pipeline import (
    BackgroundRun,
    assert_every_record_once,
    paused_review_run,
    resume,
    run_pipeline,
)

COMPANIES = EXAMPLES / "data" / "companies.csv"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"
NO_MODEL = ProcessSettings(provider="none")


def paused(source: Path, out: Path, **kwargs: object) -> tuple[BackgroundRun, UUID, list[str]]:
    """A run with review ui, once paused: (the run, its review run's id, the ids it asks about)."""
    started = time.time()
    run = BackgroundRun(source, TEMPLATE, out, review_policy="ui", id_column="company_id",
                        settings=NO_MODEL, **kwargs)
    run.start()
    run_id = asyncio.run(paused_review_run(after=started))
    asked = json.loads((out / ".augment" / "review" / "pending.json").read_text())["to_review"]
    return run, run_id, sorted(asked)


def finished(run: BackgroundRun, run_id: UUID, decision: dict) -> dict:
    """The summary of RUN once its pause is answered with DECISION."""
    asyncio.run(resume(run_id, decision))
    run.join(120)
    assert run.state is not None and run.state.is_completed(), run.state
    return run.state.result()


def audit(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]


@pytest.mark.usefixtures("prefect_api")
def test_a_rerun_keeps_earlier_decisions_and_asks_only_about_new_or_changed_records(tmp_path: Path) -> None:
    source, out = tmp_path / "companies.csv", tmp_path / "out"
    shutil.copy(COMPANIES, source)
    run, run_id, asked = paused(source, out)
    assert asked == ["c001", "c002", "c003", "c004", "c005", "c008"]
    finished(run, run_id, {"approve": True, "reject_ids": ["c002"], "reviewer": "Grace",
                           "comment": "first pass",
                           "edits": [{"id": "c003", "field": "name", "value": "Cobalt Analytics GmbH"}]})
    first = pd.read_parquet(out / "exported.parquet").set_index("_id")

    # Next month's file: c004 changed, c009 is new, the rest as they were.
    text = source.read_text().replace("in 14 cities", "in 15 cities")
    source.write_text(text + "c009,Ion Batteries,https://ion.example,60,Recycles lithium cells.\n")
    run, run_id, asked = paused(source, out)
    assert asked == ["c004", "c009"]
    # A decision kept from the last run is not this run's to change; the command says how to.
    shown = CliRunner().invoke(app, ["review", "show", str(run_id)]).output
    assert "2 records to review" in shown and "5 keep an earlier run's decision" in shown
    command = ["review", "approve", str(run_id), "--reject", "c002", "--reviewer", "Ada"]
    refused = CliRunner().invoke(app, command)
    assert refused.exit_code == 2 and "record 'c002' in reject_ids keeps the decision" in refused.output
    assert "--review-again" in refused.output
    summary = finished(run, run_id, {"approve": True, "reviewer": "Ada"})
    ids = assert_every_record_once(out, summary)
    assert sorted(ids["rejected"]) == ["c002"]
    assert sorted(ids["exported"]) == ["c001", "c003", "c004", "c005", "c008", "c009"]
    exported = pd.read_parquet(out / "exported.parquet").set_index("_id")
    assert exported.at["c003", "name"] == "Cobalt Analytics GmbH"  # the earlier edit, applied again
    for kept in ("c001", "c003", "c008"):
        assert exported.loc[kept, ["reviewed_by", "reviewed_at", "review_comment"]].tolist() == \
            first.loc[kept, ["reviewed_by", "reviewed_at", "review_comment"]].tolist()
    assert exported.loc[["c004", "c009"], "reviewed_by"].tolist() == ["Ada", "Ada"]
    assert summary["review"]["earlier_decisions"] == 5
    rows = audit(out)
    kept = {(r["id"], r["action"], r["reviewer"], r["source"]) for r in rows if r["id"] in ("c002", "c003")}
    assert kept == {("c002", "rejected", "Grace", "earlier"), ("c003", "approved", "Grace", "earlier"),
                    ("c003", "edit", "Grace", "earlier")}

    # c004 back as it was: Grace's decision on that version stands beside Ada's on the other one.
    # So nothing is new: no pause (it would expire after 30 s). Without a human, a human's
    # rejection stands.
    source.write_text(source.read_text().replace("in 15 cities", "in 14 cities"))
    for policy in ("ui", "auto"):
        summary = run_pipeline(source, TEMPLATE, out, id_column="company_id", settings=NO_MODEL,
                               review_policy=policy, review_timeout=30).result()
        assert summary["review"]["status"] == "auto" and summary["review"]["earlier_decisions"] == 7
        assert sorted(assert_every_record_once(out, summary)["rejected"]) == ["c002"]
        exported = pd.read_parquet(out / "exported.parquet").set_index("_id")
        assert exported.at["c004", "reviewed_by"] == "Grace"
    run, run_id, asked = paused(source, out, review_again=True)
    summary = finished(run, run_id, {"approve": True, "reviewer": "Lin"})
    assert asked == ["c001", "c002", "c003", "c004", "c005", "c008", "c009"]
    assert assert_every_record_once(out, summary)["rejected"] == []
    exported = pd.read_parquet(out / "exported.parquet").set_index("_id")
    assert set(exported["reviewed_by"]) == {"Lin"} and exported.at["c003", "name"] == "Cobalt Analytics"


def test_a_fingerprint_is_what_the_reviewer_saw() -> None:
    record = {"_id": "c1", "_row": 3, "name": "Acme", "employees": 120, "summary": "Robots",
              "quality_score": 0.8, "review_status": "approved"}
    same = fingerprint(record)
    # Where the record sits, augment-it's columns, a field another file added, ints read as floats.
    assert fingerprint({**record, "_row": 9, "quality_score": 0.4, "review_status": None}) == same
    assert fingerprint({**record, "country": None, "employees": 120.0}) == same
    assert fingerprint({**record, "employees": np.int64(120), "extra": float("nan")}) == same
    # What the reviewer judged: the record's fields and the answer.
    assert fingerprint({**record, "summary": "Warehouse robots"}) != same
    assert fingerprint({**record, "employees": 121}) != same
    assert fingerprint({**record, "tags": []}) != same


def test_the_ledger_keeps_what_the_human_decided_and_nothing_a_policy_did() -> None:
    frame = pd.DataFrame({"_id": ["a", "b", "c", "d"], "_ai_status": "ok", "summary": ["1", "2", "3", "4"]})
    human = ReviewDecision(approve=False, reviewer="Ada", reject_ids=["c"], auto_approved_ids=["c", "d"],
                           edits=[RecordEdit(id="d", field="summary", value="four")], source="human")
    kept = {d.id: (d.status, d.edits) for d in decisions_to_keep(human, frame, ["a", "b"])}
    # a, b: shown and rejected as a batch; c: approved by score, rejected by the human; d: edited.
    assert kept == {"a": ("rejected", {}), "b": ("rejected", {}), "c": ("rejected", {}),
                    "d": ("approved", {"summary": "four"})}
    assert decisions_to_keep(auto_decision(frame, None), frame, []) == []


def test_an_earlier_edit_of_a_field_this_run_lacks_fills_it_rather_than_failing_the_export() -> None:
    """The field was empty when reviewed (so not in the fingerprint) and this template has no such output."""
    frame = pd.DataFrame({"_id": ["a"], "_ai_status": "ok", "summary": ["Robots"]})
    kept = EarlierDecision(id="a", fingerprint=fingerprint(frame.iloc[0].to_dict()), status="approved",
                           reviewer="Grace", decided_at="2026-11-01T09:00:00+00:00",
                           edits={"notes": "checked"})
    reviewed, audit = apply_decision(frame, auto_decision(frame, None).model_copy(update={"earlier": [kept]}))
    assert reviewed.iloc[0]["notes"] == "checked" and reviewed.iloc[0]["reviewed_by"] == "Grace"
    assert audit[0] == {"id": "a", "action": "edit", "field": "notes", "before": None, "after": "checked",
                        "reviewer": "Grace", "source": "earlier", "at": "2026-11-01T09:00:00+00:00"}


@pytest.mark.usefixtures("prefect_api")
def test_retry_rejected_asks_again_only_about_what_a_reviewer_rejected_showing_why(
        llm, tmp_path: Path) -> None:
    out = tmp_path / "out"

    def review(settings: ProcessSettings, decision: dict) -> tuple[list[str], dict]:
        started = time.time()
        run = BackgroundRun(COMPANIES, TEMPLATE, out, review_policy="ui", id_column="company_id",
                            settings=settings)
        run.start()
        run_id = asyncio.run(paused_review_run(after=started))
        asked = json.loads((out / ".augment" / "review" / "pending.json").read_text())["to_review"]
        return sorted(asked), finished(run, run_id, decision)

    def summary(settings: ProcessSettings) -> dict:
        return run_pipeline(COMPANIES, TEMPLATE, out, id_column="company_id", settings=settings).result()

    review(ProcessSettings(), {"approve": True, "reject_ids": ["c002"], "reviewer": "Grace",
                               "comment": "too vague"})
    first = pd.read_parquet(out / "rejected.parquet").set_index("_id").at["c002", "summary"]
    assert llm.stats()["answered"] == 6

    # A rerun without the option pays nothing, and the rejection stands.
    assert summary(ProcessSettings())["rejected"] == 1 and llm.stats()["answered"] == 6

    retry = ProcessSettings(retry_rejected=True)
    asked, done = review(retry, {"approve": True, "reviewer": "Ada"})
    assert asked == ["c002"]  # the others keep Grace's approval
    assert llm.stats()["answered"] == 7 and done["retried_rejected"] == 1
    messages = llm.requests[-1]["body"]["messages"]
    assert json.loads(messages[-2]["content"])["summary"] == first
    said = 'A reviewer rejected this answer and said: "too vague". Answer again, correcting it.'
    assert messages[-1]["content"] == said
    exported = pd.read_parquet(out / "exported.parquet").set_index("_id")
    assert len(exported) == 6 and exported.at["c002", "summary"] != first
    assert exported.at["c002", "reviewed_by"] == "Ada"

    # Later runs, with the option or without, keep the answer Ada approved, and pay nothing.
    for settings in (ProcessSettings(), retry):
        again = summary(settings)
        assert again["exported"] == 6 and llm.stats()["answered"] == 7
        exported = pd.read_parquet(out / "exported.parquet").set_index("_id")
        assert exported.at["c002", "summary"] != first and exported.at["c002", "reviewed_by"] == "Ada"
