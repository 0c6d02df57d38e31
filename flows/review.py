from __future__ import annotations

import os
import time

import anyio
import pandas as pd
from prefect import flow, get_client, get_run_logger
from prefect.context import get_run_context
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.input.actions import aread_flow_run_input
from prefect.input.run_input import keyset_from_paused_state
from prefect.settings import PREFECT_API_URL
from prefect.states import Completed, Paused, Running, State

from augment_it import progress
from augment_it.output_types import OutputSpec
from augment_it.review import (
    ReviewInput,
    TimeoutOutcome,
    decision_problems,
    expired_decision,
    human_decision,
    split_by_score,
    undecided,
)
from augment_it.settings import ReviewPolicy
from tasks.review import (
    decide_automatically,
    earlier_decisions,
    load_processed,
    publish_review_packet,
    request_review,
    save_decision,
)

DEFAULT_TIMEOUT = 24 * 3600
POLL_SECONDS = 5  # how soon a paused run notices it was resumed
SERVER_GRACE = 120  # seconds the server's pause timeout exceeds ours (see ask_reviewer)
EXPIRED = "ReviewExpired"  # the name of the state a review run ends in when nobody decided
# `augment run` names here the temporary server it started for a run (augment_it/cli/local_server.py).
TEMPORARY_API_ENV = "AUGMENT_TEMPORARY_PREFECT_API"


class ReviewForm(RunInput, ReviewInput):
    """The form the Prefect UI shows while the run waits for a reviewer."""


@flow(name="review", log_prints=True)
async def review(out: str, policy: ReviewPolicy = "auto", approve_above: float | None = None,
                 timeout_seconds: int = DEFAULT_TIMEOUT,
                 timeout_outcome: TimeoutOutcome = "reject-all", review_again: bool = False) -> State:
    """Decide which processed records under OUT are approved: by score, by a reviewer, or by timeout.

    A reviewer's decision from an earlier run under OUT stands for a record that reads as it did
    then (same fields, same answer), unless REVIEW_AGAIN. With policy ui or cli, records scoring
    above APPROVE_ABOVE are approved without review and the rest wait for a human; if none
    decides within TIMEOUT_SECONDS, TIMEOUT_OUTCOME applies and the run ends in the state
    ReviewExpired.
    """
    processed = await load_processed(out)
    earlier = [] if review_again else await earlier_decisions(out, processed)
    if earlier:
        print(f"{len(earlier)} records keep the decision a reviewer made in an earlier run "
              "(--review-again to decide them anew)")
    earlier_ids = [kept.id for kept in earlier]
    frame = undecided(processed, earlier_ids)
    request = None
    if policy == "auto" or not split_by_score(frame, approve_above)[1]:
        decision = await decide_automatically(frame, approve_above)
    else:
        run_id = str(get_run_context().flow_run.id)
        async with get_client() as client:  # PREFECT_API_URL, or the temporary server of this run
            api_url = str(client.api_url).rstrip("/")
        request = await request_review(out, frame, run_id, api_url, approve_above,
                                       timeout_seconds, timeout_outcome, earlier_ids)
        summary = await publish_review_packet(frame, request)
        waiting = (f"Waiting for review of {len(request.to_review)} records in flow run {run_id}: "
                   f"{where_to_review(api_url)}`augment review show {run_id}` and "
                   f"`augment review approve {run_id} --reviewer NAME [--reject ID ...] [--edits FILE]`")
        print(waiting)  # the run's log, in the UI
        # The terminal of `augment run` too: at Prefect's default level the line above is lost in its
        # log lines there, and a quieter PREFECT_LOGGING_LEVEL hides it.
        progress.tell(waiting)
        given = await ask_reviewer(frame, summary, timeout_seconds, earlier_ids, request.output_specs)
        decision = human_decision(given, request) if given else expired_decision(request)
    decision.earlier = earlier
    location = await save_decision(out, decision, processed, request.to_review if request else [])
    if decision.source == "expired":
        message = f"review expired: nobody decided within {timeout_seconds} s; {decision.comment}"
        get_run_logger().warning(message)
        return Completed(name=EXPIRED, message=message, data=location)
    return Completed(message=f"{decision.source} decision by {decision.reviewer}", data=location)


def where_to_review(api_url: str) -> str:
    """How a reviewer reaches this run: a run started without PREFECT_API_URL reports to a
    temporary server that only it knows (`augment run`'s serves the UI; Prefect's own does not)."""
    shell = f"from a shell export PREFECT_API_URL={api_url}, then "
    if os.environ.get(TEMPORARY_API_ENV) == api_url:
        ui = api_url.removesuffix("/api")
        return f"use the Prefect UI at {ui} (this run's temporary server), or {shell}"
    return shell if not PREFECT_API_URL.value() else "use the Prefect UI, or from a shell "


async def ask_reviewer(frame: pd.DataFrame, summary: str, timeout_seconds: int,
                       earlier: list[str], specs: dict[str, OutputSpec]) -> ReviewInput | None:
    """Pause until a valid decision on FRAME arrives; an invalid one pauses again with what was wrong.

    The timeout covers all pauses together; None when it runs out.
    """
    logger = get_run_logger()
    description = summary
    deadline = time.monotonic() + timeout_seconds
    pauses = 0
    while (remaining := deadline - time.monotonic()) > 0:
        pauses += 1
        pause_key = str(pauses)  # what Prefect would number it, named here to find its answer later
        form = None
        # The server fails a run whose pause outlives its timeout, so the pause gets a longer one
        # than ours: when ours runs out, the run leaves the pause itself and ends as ReviewExpired.
        with anyio.move_on_after(remaining):
            form = await pause_flow_run(
                wait_for_input=ReviewForm.with_initial_data(description=description),
                timeout=round(remaining) + SERVER_GRACE,
                poll_interval=min(POLL_SECONDS, max(0.5, remaining / 4)),
                key=pause_key,
            )
        if form is None and (form := await leave_pause(pause_key)) is None:
            return None
        given = ReviewInput.model_validate(form.model_dump())
        problems = decision_problems(given, frame, earlier, specs)
        if not problems:
            return given
        logger.warning("Review input rejected, waiting again: %s", "; ".join(problems))
        description = ("**The last submission could not be used, nothing was applied:**\n\n"
                       + "\n".join(f"- {p}" for p in problems) + "\n\n" + summary)
    return None


async def leave_pause(pause_key: str) -> ReviewForm | None:
    """Take the run out of its pause (as a resume would) so it can end in a state of its own.

    A reviewer who resumed after the pause last polled was accepted by the server, so that
    decision is returned, not dropped; None when nobody answered.
    """
    run_id = get_run_context().flow_run.id
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        if run.state is not None and run.state.is_paused():
            await client.set_flow_run_state(run_id, Running(message="review expired"))
    keyset = keyset_from_paused_state(Paused(pause_key=pause_key))
    answer = await aread_flow_run_input(keyset["response"], flow_run_id=run_id)
    return None if answer is None else ReviewForm(**answer)
