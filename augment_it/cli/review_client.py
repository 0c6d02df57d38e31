"""The Prefect API calls behind `augment review`: find paused review runs, resume one with a decision.

Talks to PREFECT_API_URL. A run's data is found through its own parameters (`out`), so the
shell that decides needs no other hint than the flow run id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from augment_it.errors import UserInputError
from augment_it.review import ReviewInput

REVIEW_FLOW = "review"
SCHEMA_WAIT = 30.0  # seconds a just-paused run may take to save its form's schema


class ReviewClientError(UserInputError):
    """A run that cannot take a decision (unknown, not a review, not paused, refused)."""


@dataclass(frozen=True)
class ReviewRun:
    id: str
    name: str
    state: str
    paused: bool
    since: datetime | None  # when it entered its current state
    parameters: dict[str, Any]

    @property
    def out(self) -> str | None:
        return self.parameters.get("out")

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.since is None:
            return None
        return ((now or datetime.now(UTC)) - self.since).total_seconds()


@asynccontextmanager
async def _prefect() -> AsyncIterator[PrefectClient]:
    """A client of the server at PREFECT_API_URL. Without one, Prefect would start a temporary
    server of its own, which knows no run: "no runs are waiting" would be the wrong answer."""
    url = PREFECT_API_URL.value()
    if not url:
        raise ReviewClientError(
            "PREFECT_API_URL is not set, so there is no Prefect server to ask: set it to the server "
            "the run reports to (a run started without it prints the address of its temporary "
            "server when it pauses for review)")
    try:
        async with get_client() as client:
            yield client
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise ReviewClientError(f"cannot reach the Prefect server at {url}: {reason}") from None


def _review_run(run: FlowRun) -> ReviewRun:
    state = run.state
    return ReviewRun(id=str(run.id), name=run.name, state=state.name if state else "unknown",
                     paused=bool(state and state.is_paused()), since=state.timestamp if state else None,
                     parameters=dict(run.parameters or {}))


async def paused_reviews() -> list[ReviewRun]:
    """Review runs waiting for a decision, oldest first."""
    async with _prefect() as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[REVIEW_FLOW])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PAUSED]))),
        )
    found = [_review_run(r) for r in runs]
    return sorted(found, key=lambda r: r.since or datetime.now(UTC))


async def read_review_run(run_id: str) -> ReviewRun:
    async with _prefect() as client:
        return _review_run(await _read_review(client, run_id))


async def submit(run_id: str, given: ReviewInput, schema_wait: float = SCHEMA_WAIT) -> None:
    """Resume the paused run with the decision; raise with the server's reason if it is refused."""
    async with _prefect() as client:
        run = await _read_review(client, run_id)
        if run.state is None or not run.state.is_paused():
            state = run.state.name if run.state else "unknown"
            raise ReviewClientError(f"flow run {run_id} is not waiting for review (state: {state})")
        await wait_for_form(client, run, schema_wait)
        result = await client.resume_flow_run(run.id, run_input=given.model_dump())
        if result.status.value != "ACCEPT":
            reason = getattr(result.details, "reason", None) or str(result.details)
            raise ReviewClientError(f"the server refused the decision for run {run_id}: {reason}")


async def _read_review(client: PrefectClient, run_id: str) -> FlowRun:
    try:
        run = await client.read_flow_run(UUID(run_id))
    except ValueError:
        raise ReviewClientError(f"'{run_id}' is not a flow run id") from None
    except ObjectNotFound:
        raise ReviewClientError(f"no flow run {run_id} on the Prefect server") from None
    flow = await client.read_flow(run.flow_id)
    if flow.name != REVIEW_FLOW:
        raise ReviewClientError(f"flow run {run_id} is a '{flow.name}' run, not a review run; "
                                "`augment review list` shows the runs waiting for review")
    return run


async def wait_for_form(client: PrefectClient, run: FlowRun, timeout: float) -> None:
    """The run turns PAUSED before it saves its form's schema; a resume sent in between is refused."""
    keyset = run.state.state_details.run_input_keyset if run.state else None
    if not keyset:
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            await client.read_flow_run_input(run.id, keyset["schema"])
            return
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:
                raise
            if time.monotonic() > deadline:
                raise ReviewClientError(f"flow run {run.id} is paused but has not published its "
                                        "review form yet; try again") from None
            await asyncio.sleep(0.5)
