"""The deployments on process work pools, as on a machine without Docker: a real `prefect server
start`, deployments/process_pools.py, one `prefect worker start --type process` per pool; the
pipeline deployment starts each stage's deployment and they meet in a shared folder. A short
schedule on the same deployment fires by itself and completes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import DeploymentScheduleCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.schedules import IntervalSchedule
from prefect.deployments import run_deployment
from prefect.exceptions import FlowRunWaitTimeout
from prefect.flow_runs import wait_for_flow_run
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.conftest import PROVIDER_ENV

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
STAGES = ("collect", "process", "review", "export")
POOLS = [f"augment-{name}-local" for name in (*STAGES, "pipeline")]
RUN_TIMEOUT = 300
# The schedule's first slot: the scheduler (every 2 s here) books only slots still to come, and on a
# busy machine it once came 11 s after a slot 5 s away, booking the next one, 30 minutes on.
FIRST_SLOT_IN = timedelta(seconds=30)


@dataclass
class Server:
    api: str
    env: dict[str, str]
    data: Path
    logs: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:  # the child keeps its own handle
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT twice (a worker ignores SIGTERM and the first SIGINT may only begin shutdown), then kill
    its process group: flow-run subprocesses it started go with it."""
    for sig in (signal.SIGINT, signal.SIGINT):
        if process.poll() is None:
            os.killpg(process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def tails(logs: Path) -> str:
    return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:])
                     for log in sorted(logs.glob("*.log")))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME and SQLite file."""
    home = tmp_path_factory.mktemp("prefect-home")
    logs = tmp_path_factory.mktemp("logs")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV and not k.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",  # notice the test's schedule quickly
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "AUGMENT_CACHE_DIR": str(home / "answers"),
        "GX_ANALYTICS_ENABLED": "False",
    })
    process = start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env,
                    logs / "server.log")
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{env['PREFECT_API_URL']}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.time() < deadline, tails(logs)
            time.sleep(0.5)
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            yield Server(env["PREFECT_API_URL"], env, home / "data", logs)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def workers(server: Server) -> Iterator[None]:
    """Deploy with the script, register the blocks with the CLI, start one worker per pool."""
    deploy = subprocess.run([sys.executable, "deployments/process_pools.py", "--data", str(server.data)],
                            env=server.env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    for pool in POOLS:
        assert f"--pool {pool}" in deploy.stdout
    register = subprocess.run([PREFECT, "block", "register", "-m", "blocks.templates"], env=server.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert register.returncode == 0, register.stdout + register.stderr
    processes = []
    try:
        for pool in POOLS:
            # One at a time: each worker updates its pool's row as it starts, and five at once on
            # SQLite met "database is locked" (a worker that never started; its stage never ran).
            log = server.logs / f"worker-{pool}.log"
            processes.append(start([PREFECT, "worker", "start", "--type", "process", "--pool", pool,
                                    "--name", pool], {**server.env, "PYTHONUNBUFFERED": "1"}, log))
            deadline = time.time() + 120
            while "started!" not in log.read_text(errors="replace"):
                assert processes[-1].poll() is None and time.time() < deadline, tails(server.logs)
                time.sleep(0.5)
        yield
    finally:
        for process in processes:
            stop(process)


async def wait_final(run_id: UUID, logs: Path, timeout: float = RUN_TIMEOUT) -> FlowRun:
    try:
        return await wait_for_flow_run(run_id, timeout=int(timeout))
    except FlowRunWaitTimeout:
        raise AssertionError(f"flow run {run_id} not finished in {timeout} s\n{tails(logs)}") from None


async def stage_runs(parent: UUID) -> dict[str, FlowRun]:
    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
        flows = {run.id: (await client.read_flow(run.flow_id)).name for run in runs}
    return {flows[run.id]: run for run in runs}


def assert_example_exported(out: Path) -> dict[str, int]:
    summary = json.loads((out / "summary.json").read_text())
    counts = tuple(summary[k] for k in ("collected", "quarantined", "exported", "rejected"))
    assert counts == (8, 2, 6, 0), summary
    return summary


def test_pipeline_deployment_runs_each_stage_on_its_own_process_pool(server: Server, workers: None) -> None:
    out = server.data / "runs" / "by-hand"
    run = run_deployment("augment-pipeline/augment-pipeline", timeout=0,
                         parameters={"out": str(out), "review_policy": "auto"})
    final = asyncio.run(wait_final(run.id, server.logs))
    assert final.state.is_completed(), f"{final.state}\n{tails(server.logs)}"
    assert final.work_pool_name == "augment-pipeline-local"
    assert_example_exported(out)

    stages = asyncio.run(stage_runs(run.id))
    assert sorted(stages) == sorted(STAGES), stages
    for name, child in stages.items():  # from its deployment, by its pool's worker, in its own process
        assert child.deployment_id is not None and child.work_pool_name == f"augment-{name}-local"
        assert child.state.is_completed()
    pids = {child.infrastructure_pid for child in stages.values()} | {final.infrastructure_pid}
    assert None not in pids and len(pids) == 5


def test_the_preflight_deployment_projects_a_run_on_the_pipelines_pool(server: Server, workers: None) -> None:
    out = server.data / "runs" / "preflight"
    run = run_deployment("preflight/preflight", timeout=0, parameters={"out": str(out)})
    final = asyncio.run(wait_final(run.id, server.logs))
    assert final.state.is_completed(), f"{final.state}\n{tails(server.logs)}"
    assert final.work_pool_name == "augment-pipeline-local"
    forecast = json.loads((out / ".augment" / "process" / "preflight.json").read_text())
    # The workers have no model key: nothing is asked, and the projection says why.
    assert (forecast["records"], forecast["to_ask"]) == (6, 6)
    assert "no API key for openai" in forecast["skipped"] and forecast["cost_usd"] > 0


def test_the_deployed_sample_schedule_is_there_and_off(server: Server, workers: None) -> None:
    async def schedules() -> list[tuple[str | None, bool, dict[str, object]]]:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("augment-pipeline/augment-pipeline")
            return [(s.slug, s.active, s.parameters) for s in deployment.schedules]

    (slug, active, parameters), = asyncio.run(schedules())
    assert (slug, active) == ("weekday-morning", False)
    assert parameters["out"] == str(server.data / "runs" / "scheduled")  # /data localized


def test_a_schedule_fires_by_itself_and_the_run_completes(server: Server, workers: None) -> None:
    """An interval schedule whose first slot is seconds away: the server's scheduler creates the
    run and a worker picks it up, with no one asking for it."""
    out = server.data / "runs" / "scheduled-by-test"

    async def add_schedule() -> UUID:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name("augment-pipeline/augment-pipeline")
            schedule = IntervalSchedule(interval=timedelta(minutes=30),
                                        anchor_date=datetime.now(UTC) + FIRST_SLOT_IN)
            await client.create_deployment_schedules(deployment.id, [DeploymentScheduleCreate(
                schedule=schedule, active=True, slug="test-soon",
                parameters={"out": str(out), "review_policy": "auto"})])
            return deployment.id

    async def scheduled_run(deployment_id: UUID) -> UUID:
        deadline = time.time() + 90
        async with get_client() as client:
            while time.time() < deadline:
                runs = await client.read_flow_runs(deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[deployment_id])))
                fired = [r for r in runs if r.auto_scheduled and r.parameters.get("out") == str(out)]
                if fired:  # the scheduler also books later slots: the first is due now
                    first = min(fired, key=lambda r: r.expected_start_time)
                    assert first.expected_start_time <= datetime.now(UTC) + FIRST_SLOT_IN, (
                        "the scheduler booked only later slots: it came after the first had passed")
                    return first.id
                await asyncio.sleep(1)
        log = (server.logs / "server.log").read_text(errors="replace")
        if "Can't evaluate bulk DML statement" in log:
            raise AssertionError("the server's scheduler cannot insert runs: Prefect 3.8.8 needs "
                                 "SQLAlchemy < 2.1 (see the server log)")
        raise AssertionError(f"the schedule created no run\n{tails(server.logs)}")

    run_id = asyncio.run(scheduled_run(asyncio.run(add_schedule())))
    final = asyncio.run(wait_final(run_id, server.logs))
    assert final.state.is_completed(), f"{final.state}\n{tails(server.logs)}"
    assert_example_exported(out)
