"""Deploy prefect.yaml's deployments on process work pools, for machines without Docker.

prefect.yaml stays the one description of the deployments (entrypoints, parameters, schedules);
this script takes them from it, swaps the container paths for local ones (/opt/augment-it → the
project folder, /data → a local data folder), creates one process work pool per deployment and
deploys the flows from the project folder (`flow.from_source`). Deployment names are the same as
in Docker (`collect/collect`, ..., `augment-pipeline/augment-pipeline`): the pipeline starts its
stages by those names.

    export PREFECT_API_URL=http://127.0.0.1:4200/api
    python deployments/process_pools.py --data /srv/augment
    prefect worker start --type process --pool augment-collect-local    # one worker per pool
    ...
    prefect deployment run augment-pipeline/augment-pipeline --param review_policy=auto

Every machine running a worker must see the data folder at the same path (one machine, or a
shared mount).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.schedules import Cron, Interval, Schedule

ROOT = Path(__file__).resolve().parents[1]
IMAGE_ROOT, IMAGE_DATA = "/opt/augment-it", "/data"


def localize(value: Any, source: Path, data: Path) -> Any:
    """The same parameter value with the image's paths replaced by this machine's."""
    if isinstance(value, dict):
        return {k: localize(v, source, data) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, source, data) for v in value]
    if isinstance(value, str):
        for prefix, local in ((IMAGE_ROOT, source), (IMAGE_DATA, data)):
            if value == prefix or value.startswith(prefix + "/"):
                return str(local) + value[len(prefix):]
    return value


def schedule(config: dict[str, Any], source: Path, data: Path) -> Schedule:
    common = {"timezone": config.get("timezone"), "active": config.get("active", True),
              "parameters": localize(config.get("parameters") or {}, source, data),
              "slug": config.get("slug")}
    if "cron" in config:
        return Cron(config["cron"], **common)
    if "interval" in config:
        return Interval(config["interval"], **common)
    raise ValueError(f"unsupported schedule in prefect.yaml: {config}")


async def create_pool(name: str) -> None:
    async with get_client() as client:
        try:
            await client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            print(f"created process work pool {name!r}")
        except ObjectAlreadyExists:
            pass


def deploy_all(source: Path, data: Path, suffix: str) -> list[str]:
    """Deploy every deployment in SOURCE/prefect.yaml; returns the pool names to start workers on."""
    spec = yaml.safe_load((source / "prefect.yaml").read_text())
    pools = []
    for deployment in spec["deployments"]:
        pool = deployment["work_pool"]["name"] + suffix
        asyncio.run(create_pool(pool))
        flow = Flow.from_source(source=str(source), entrypoint=deployment["entrypoint"])
        flow.deploy(
            name=deployment["name"],
            work_pool_name=pool,
            description=deployment.get("description"),
            parameters=localize(deployment.get("parameters") or {}, source, data),
            schedules=[schedule(s, source, data) for s in deployment.get("schedules") or []],
            build=False, push=False, print_next_steps=False, ignore_warnings=True,
        )
        if pool not in pools:  # the preflight shares the pipeline's pool
            pools.append(pool)
    return pools


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT,
                        help="project folder the workers run the flows from (default: this checkout)")
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "data",
                        help="local folder standing in for the containers' /data (default: out/data)")
    parser.add_argument("--pool-suffix", default="-local",
                        help="appended to prefect.yaml's pool names (default: -local)")
    args = parser.parse_args(argv)
    source, data = args.source.resolve(), args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    pools = deploy_all(source, data, args.pool_suffix)
    print("deployed; start one worker per pool:")
    for pool in pools:
        print(f"  prefect worker start --type process --pool {pool}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
