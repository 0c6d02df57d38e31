"""The end-to-end check behind scripts/e2e-docker.sh, run on the host against the compose stack.

    python scripts/e2e_docker_check.py PIPELINE_RUN_ID OUT EVENTS_FILE

Waits for the pipeline's review run to pause, resumes it through the API (rejecting two ids),
waits for the pipeline to finish, then checks that each stage ran as its own flow run in its own
container started from its own image (docker events recorded by the script), and that the export
on the shared volume has the expected counts.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import FlowRunWaitTimeout, PrefectHTTPStatusError
from prefect.flow_runs import wait_for_flow_run

STAGES = ("collect", "process", "review", "export")
REJECT = ["c002", "c005"]
EXPECTED = {"collected": 8, "quarantined": 2, "exported": 6 - len(REJECT), "rejected": len(REJECT),
            "failed": 0}
VOLUME = "augment-it-data"
TIMEOUT = 600


def log(message: str) -> None:
    print(f"[e2e-check] {message}", flush=True)


async def children(client: object, parent: UUID) -> dict[str, FlowRun]:
    runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(  # type: ignore[attr-defined]
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
    names = {run.id: (await client.read_flow(run.flow_id)).name for run in runs}  # type: ignore[attr-defined]
    return {names[run.id]: run for run in runs}


async def resume_review(pipeline: UUID) -> UUID:
    """Resume the paused review run; retried while the server refuses a resume that arrives
    before the run has saved its input schema."""
    deadline = time.time() + TIMEOUT
    decision = {"approve": True, "reject_ids": REJECT, "reviewer": "e2e", "comment": "docker e2e"}
    async with get_client() as client:
        while time.time() < deadline:
            run = (await children(client, pipeline)).get("review")
            pipeline_run = await client.read_flow_run(pipeline)
            if pipeline_run.state.is_final():
                raise SystemExit(f"pipeline ended before review: {pipeline_run.state}")
            if run and run.state and run.state.is_paused():
                try:
                    result = await client.resume_flow_run(run.id, run_input=decision)
                except PrefectHTTPStatusError as exc:
                    log(f"resume refused for now ({exc.response.status_code}); retrying")
                else:
                    if result.status.value == "ACCEPT":
                        log(f"review run {run.id} resumed: approve, reject {REJECT}")
                        return run.id
                    log(f"resume not accepted yet: {result.details}; retrying")
            await asyncio.sleep(2)
    raise SystemExit("the review run did not pause in time")


async def wait_final(run_id: UUID) -> FlowRun:
    try:
        return await wait_for_flow_run(run_id, timeout=TIMEOUT)
    except FlowRunWaitTimeout:
        raise SystemExit(f"flow run {run_id} did not finish in {TIMEOUT} s") from None


def started_containers(events_file: Path) -> dict[str, tuple[str, str]]:
    """container id -> (image, flow run id) for every flow-run container Docker started."""
    started = {}
    for line in events_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] not in ("", "<no"):
            started[parts[0]] = (parts[1], parts[2])
    return started


def read_summary(out: str) -> dict[str, object]:
    text = subprocess.run(["docker", "run", "--rm", "-v", f"{VOLUME}:/data:ro", "--entrypoint", "cat",
                           "augment-it-review:0.1.0", f"{out}/summary.json"],
                          check=True, capture_output=True, text=True).stdout
    return json.loads(text)


def main(pipeline_id: str, out: str, events_file: str) -> int:
    pipeline = UUID(pipeline_id)
    asyncio.run(resume_review(pipeline))
    final = asyncio.run(wait_final(pipeline))
    if not final.state.is_completed():
        log(f"FAIL: pipeline ended {final.state.type.value}: {final.state.message}")
        return 1

    async def stage_runs() -> dict[str, FlowRun]:
        async with get_client() as client:
            return await children(client, pipeline)

    stages = asyncio.run(stage_runs())
    containers = started_containers(Path(events_file))
    problems = []
    if sorted(stages) != sorted(STAGES):
        problems.append(f"stage runs found: {sorted(stages)}")
    seen = set()
    for name, run in [*stages.items(), ("augment-pipeline", final)]:
        container = (run.infrastructure_pid or "").rsplit(":", 1)[-1]
        image, flow_run = containers.get(container, ("?", "?"))
        pool = "augment-pipeline" if name == "augment-pipeline" else f"augment-{name}"
        log(f"{name:17} flow run {run.id} pool {run.work_pool_name} container {container[:12]} image {image}")
        if run.work_pool_name != pool:
            problems.append(f"{name} ran on pool {run.work_pool_name}, not {pool}")
        if image != f"augment-it-{name}:0.1.0" or flow_run != str(run.id):
            problems.append(f"{name}: container {container[:12]!r} was not started from its own image "
                            f"for this flow run (image {image}, flow run {flow_run})")
        if container in seen:
            problems.append(f"{name} shares container {container[:12]} with another stage")
        seen.add(container)

    summary = read_summary(out)
    counts = {k: summary.get(k) for k in EXPECTED}
    log(f"summary.json counts: {counts}")
    if counts != EXPECTED:
        problems.append(f"summary counts {counts}, expected {EXPECTED}")
    for problem in problems:
        log(f"FAIL: {problem}")
    if not problems:
        log("OK: every stage ran in its own container from its own image; export is right")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
