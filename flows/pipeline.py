"""The parent flow: collect → process → review → export, each stage handed the run directory.

Locally the stages run as subflows; deployed, the same parent starts each stage's deployment
(each on its own work pool and image) and they meet on shared storage through OUT.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import Flow, flow
from prefect.context import get_run_context
from prefect.deployments import run_deployment

from augment_it.layout import RunLayout, read_json
from augment_it.review import TimeoutOutcome
from augment_it.run_lock import holding_run_dir
from augment_it.settings import ExportFormat, ProcessSettings, ReviewPolicy
from flows.collect import collect
from flows.export import export
from flows.process import process
from flows.review import DEFAULT_TIMEOUT, review
from tasks.export import check_destination
from tasks.failures import StageStopped, aoutcome, fails_cleanly
from tasks.review import cancel_abandoned_review

StageMode = Literal["subflows", "deployments"]


async def run_stage(stage: Flow, mode: StageMode, **parameters: Any) -> None:
    """Run one stage to completion, or stop the pipeline with the stage's own message."""
    if mode == "subflows":
        state = await stage(**parameters, return_state=True)  # every stage flow is async
    else:
        # Deployed stages return nothing we need: their data is on shared storage under OUT.
        run = await run_deployment(f"{stage.name}/{stage.name}", parameters=parameters, as_subflow=True)
        state = run.state
    if state is None or not state.is_completed():
        message = state.message if state else "no state"
        raise StageStopped(f"{stage.name} stage: {message}")


@flow(name="augment-pipeline", log_prints=True)
@fails_cleanly
async def augment_pipeline(
    source: str,
    template: str,
    out: str,
    review_policy: ReviewPolicy = "auto",
    approve_above: float | None = None,
    fmt: ExportFormat = "parquet",
    id_column: str | None = None,
    settings: ProcessSettings | None = None,
    review_timeout: int = DEFAULT_TIMEOUT,
    review_timeout_outcome: TimeoutOutcome = "reject-all",
    stages: StageMode = "subflows",
    destination: str | None = None,
    review_again: bool = False,
    encoding: str | None = None,
) -> dict[str, Any]:
    """Augment the records in SOURCE with TEMPLATE, review them, and export them under OUT.

    A rerun into the same OUT asks a reviewer only about new or changed records, unless REVIEW_AGAIN.
    """
    settings = settings or ProcessSettings()
    if destination:  # a deployment run from the UI has had no CLI check it
        await aoutcome(check_destination(destination, template, return_state=True))
    run_id = str(get_run_context().flow_run.id)
    with holding_run_dir(out, owner=run_id) as killed:
        if killed:  # a review that run waited for can never end; it still showed as waiting
            await cancel_abandoned_review(out, f"its run ({killed.get('owner')}) was killed while it waited "
                                          f"for review; run {run_id} took over {out}")
        await run_stage(collect, stages, source=source, out=out, template=template, id_column=id_column,
                        encoding=encoding)
        await run_stage(process, stages, out=out, template=template,
                        settings=settings.model_dump() if stages == "deployments" else settings)
        await run_stage(review, stages, out=out, policy=review_policy, approve_above=approve_above,
                        timeout_seconds=review_timeout, timeout_outcome=review_timeout_outcome,
                        review_again=review_again)
        await run_stage(export, stages, out=out, fmt=fmt, destination=destination)
    return read_json(RunLayout(out).summary)
