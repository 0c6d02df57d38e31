"""Helpers to run the pipeline in tests and find its paused review."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import pandas as pd
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType

from augment_it.export import commonest_reasons
from augment_it.settings import ProcessSettings
from flows.pipeline import augment_pipeline

OUTCOME_FILES = ("exported", "rejected", "quarantined", "failed")


def run_pipeline(source: Path | str, template: Path | str, out: Path, **kwargs: Any) -> Any:
    """Run augment-pipeline to its final state (a prefect State)."""
    kwargs.setdefault("settings", ProcessSettings())
    return asyncio.run(augment_pipeline(source=str(source), template=str(template), out=str(out),
                                        return_state=True, **kwargs))


class BackgroundRun(threading.Thread):
    """The pipeline in a thread, for tests that must act while it is paused."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(daemon=True)
        self.args, self.kwargs, self.state = args, kwargs, None

    def run(self) -> None:
        self.state = run_pipeline(*self.args, **self.kwargs)


async def paused_review_run(after: float, timeout: float = 90) -> UUID:
    """The id of a review flow run that is PAUSED, started after `after` (a timestamp)."""
    deadline = time.time() + timeout
    async with get_client() as client:
        while time.time() < deadline:
            runs = await client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["review"])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
            )
            fresh = [r for r in runs if r.created and r.created.timestamp() >= after - 1]
            if fresh:
                return fresh[0].id
            await asyncio.sleep(0.5)
    raise TimeoutError("no review run paused in time")


async def resume(run_id: UUID, decision: dict[str, Any]) -> None:
    """Resume through the API, once the paused run has saved its form (else the server refuses)."""
    from augment_it.cli.review_client import wait_for_form

    async with get_client() as client:
        await wait_for_form(client, await client.read_flow_run(run_id), timeout=30)
        result = await client.resume_flow_run(run_id, run_input=decision)
        assert result.status.value == "ACCEPT", result.details


def outcome_frames(out: Path, fmt: str = "parquet") -> dict[str, pd.DataFrame]:
    """Each outcome file, read back."""
    readers = {"parquet": pd.read_parquet, "csv": lambda p: pd.read_csv(p, dtype=str),
               "jsonl": lambda p: pd.read_json(p, lines=True, dtype=False)}
    frames = {}
    for name in OUTCOME_FILES:
        path = out / f"{name}.{fmt}"
        frames[name] = readers[fmt](path) if path.stat().st_size else pd.DataFrame()
    return frames


def frame_ids(frame: pd.DataFrame) -> list[str]:
    return [str(i) for i in frame["_id"]] if "_id" in frame.columns else []


def assert_every_record_once(out: Path, summary: dict[str, Any],
                             fmt: str = "parquet") -> dict[str, list[str]]:
    """collected = exported + rejected + quarantined + failed, and each id is in exactly one file.

    (Records sharing a duplicate id are all quarantined, so an id may repeat within that file.)
    """
    frames = outcome_frames(out, fmt)
    ids = {name: frame_ids(frame) for name, frame in frames.items()}
    every = [i for name in OUTCOME_FILES for i in ids[name]]
    assert summary["collected"] == len(every) == sum(
        summary[k] for k in ("exported", "rejected", "quarantined", "failed"))
    assert all(i not in ("", "None", "nan") for i in every), "a record without an id"
    for index, name in enumerate(OUTCOME_FILES):
        for other in OUTCOME_FILES[index + 1:]:
            assert not set(ids[name]) & set(ids[other]), f"ids in both {name} and {other}"
    # The summary's reasons are those of the files.
    failed, quarantined = (frames[name].get("_reason", pd.Series(dtype=object))
                           for name in ("failed", "quarantined"))
    assert summary["failure_reasons"] == commonest_reasons(failed)
    assert summary["quarantine_reasons"] == quarantined.head(3).tolist()
    return ids
