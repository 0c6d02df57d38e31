"""The whole pipeline on many records: peak memory and Prefect's share of the wall time.

Runs augment-pipeline (auto review, Parquet export) in this process on N generated records
against a zero-latency OpenAI-compatible stand-in (in its own process), then reads the run's
task runs back from the Prefect API. Prefect's share is the wall time not spent inside any task
run (flow and task orchestration, state changes, artifacts), as a fraction of the whole.

    python bench/scale.py --records 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # the project's prefect.toml configures the servers started here
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.servers import add_server_argument, prefect_server  # noqa: E402
from bench.throughput import TEMPLATE, Scenario, Standin, write_records  # noqa: E402


def covered_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Length of the union of time intervals."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += (current_end - current_start).total_seconds()
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += (current_end - current_start).total_seconds()
    return total


async def task_intervals() -> list[tuple[datetime, datetime]]:
    from prefect.client.orchestration import get_client
    from prefect.settings import get_current_settings

    # The server records task runs in batches (prefect.toml): let its last flush happen first.
    await asyncio.sleep(get_current_settings().server.services.task_run_recorder.flush_interval + 1)
    intervals, offset = [], 0
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(limit=200, offset=offset)
            intervals += [(r.start_time, r.end_time) for r in runs if r.start_time and r.end_time]
            if len(runs) < 200:
                return intervals
            offset += 200


def run(records: int, concurrency: int) -> dict[str, Any]:
    from augment_it.calling import CallPolicy
    from augment_it.settings import ProcessSettings
    from flows.pipeline import augment_pipeline

    standin = Standin(Scenario("scale", records=records, latency=0.0, jitter=0.0))
    work = Path(tempfile.mkdtemp(prefix="augment-scale-"))
    os.environ.update({"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": standin.base_url,
                       "AUGMENT_CACHE_DIR": str(work / "cache")})
    source, template = work / "records.csv", work / "bench.yaml"
    write_records(source, records)
    template.write_text(TEMPLATE)
    try:
        started = time.perf_counter()
        state = asyncio.run(augment_pipeline(
            source=str(source), template=str(template), out=str(work / "out"), id_column="id",
            settings=ProcessSettings(call=CallPolicy(concurrency=concurrency)), return_state=True))
        wall = time.perf_counter() - started
        summary = state.result()
        inside_tasks = covered_seconds(asyncio.run(task_intervals()))
    finally:
        standin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "records": records, "concurrency": concurrency, "wall_seconds": round(wall, 1),
        "records_per_s": round(records / wall, 1),
        "exported": summary["exported"], "failed": summary["failed"], "balanced": summary["balanced"],
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "seconds_inside_tasks": round(inside_tasks, 1),
        "prefect_share": round(1 - inside_tasks / wall, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    add_server_argument(parser)
    args = parser.parse_args()
    with prefect_server(args.server):
        print(json.dumps({"server": args.server, **run(args.records, args.concurrency)}), flush=True)


if __name__ == "__main__":
    main()
