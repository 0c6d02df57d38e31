"""Throughput of the process stage against a local OpenAI-compatible stand-in.

Starts the stand-in in its own process (configurable latency, jitter, RPM cap and faults),
collects N generated records, times the process flow on them, and prints records/s,
efficiency = achieved / min(concurrency / latency, RPM / 60), 429s, failures and duplicate
calls. Ratios measured in one run, not absolute promises.

    python bench/throughput.py --records 2000 --latency 0.5 --jitter 0.1 --concurrency 64
    python bench/throughput.py --scenario acceptance      # the issue's list, one after another
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)  # the project's prefect.toml configures the servers started here
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.servers import add_server_argument, free_port, prefect_server  # noqa: E402

TEMPLATE = """name: bench
provider: openai
model: gpt-4o-mini
prompt: "Classify record {{ id }}: {{ text }}"
output:
  label: string
  score: integer
"""


@dataclass
class Scenario:
    name: str
    records: int = 2000
    concurrency: int = 64
    latency: float = 0.5
    jitter: float = 0.1
    rpm: int | None = None
    faults: dict[str, float] = field(default_factory=dict)  # p429, p500, p_bad_json, p_hang
    hang_seconds: float = 30.0
    timeout: float = 60.0
    whole: bool = False  # also time the whole `augment run`, on its own and in a warm process
    kill_half: bool = False  # kill -9 the run at about half way, then rerun
    warm: bool = False  # kill_half: the commands run in a warm process (`augment daemon`)


ACCEPTANCE = [
    Scenario("c64 latency 0.5s", whole=True),
    Scenario("c256", concurrency=256),
    Scenario("c64 rpm 3000", rpm=3000),
    Scenario("fault mix", faults={"p429": 0.05, "p500": 0.05, "p_bad_json": 0.03, "p_hang": 0.01},
             timeout=5.0),
    Scenario("kill -9 half way", kill_half=True),
    Scenario("kill -9 half way, warm process", kill_half=True, warm=True),
]


class Standin:
    """The stand-in in its own process, so it does not share a core's GIL with the client."""

    def __init__(self, scenario: Scenario) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tests.standins.llm_server", "--port", str(self.port),
                "--latency", str(scenario.latency), "--jitter", str(scenario.jitter),
                "--hang-seconds", str(scenario.hang_seconds), "--retry-after", "1"]
        if scenario.rpm:
            args += ["--rpm", str(scenario.rpm)]
        for name, value in scenario.faults.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                self.stats()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the stand-in did not start")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as response:
            return json.loads(response.read())

    def timeline(self) -> list[tuple[float, float, int]]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/timeline", timeout=30) as response:
            return [tuple(row) for row in json.loads(response.read())]

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", method="POST"),
                               timeout=5)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(10)


def write_records(path: Path, count: int) -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta",
             "eta", "theta", "iota", "kappa", "lambda", "mu"]
    with path.open("w") as handle:
        handle.write("id,text\n")
        for i in range(count):
            handle.write(f"r{i:07d},{' '.join(words[(i + k) % len(words)] for k in range(12))} {i}\n")


def where_time_went(timeline: list[tuple[float, float, int]], started: float, ended: float,
                    concurrency: int) -> dict[str, float]:
    """Split the stage's wall time by what the model slots were doing (server-side stamps).

    before_first_call / after_last_answer: the stage's fixed costs; busy_share: requests in
    flight on average between the first call and the last answer, over CONCURRENCY."""
    if not timeline:
        return {}
    first = min(row[0] for row in timeline)
    last = max(row[1] for row in timeline)
    in_flight = sum(end - start for start, end, _ in timeline) / max(last - first, 1e-9)
    return {"before_first_call_s": round(first - started, 2), "calls_span_s": round(last - first, 2),
            "after_last_answer_s": round(ended - last, 2),
            "busy_share": round(in_flight / concurrency, 3)}


def failure_reasons(parts: list[str]) -> dict[str, Any]:
    """Every failed record must say why: count those that do not, and the commonest reasons."""
    import pandas as pd

    from augment_it.records import AI_STATUS, REASON

    processed = pd.concat([pd.read_parquet(part, columns=[AI_STATUS, REASON]) for part in parts])
    reasons = processed.loc[processed[AI_STATUS] == "failed", REASON].fillna("")
    return {"failed_without_reason": int((reasons.str.strip() == "").sum()),
            "failure_reasons": reasons.str.slice(0, 80).value_counts().head(3).to_dict()}


AUGMENT = [sys.executable, "-m", "augment_it.cli.launcher"]  # what the `augment` script runs


def run_cli(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run([*AUGMENT, *args], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in (0, -9):
        print(done.stderr[-3000:], file=sys.stderr)
    return time.perf_counter() - started, done.returncode


def measure(scenario: Scenario) -> dict[str, Any]:
    from augment_it.calling import CallPolicy
    from augment_it.settings import ProcessSettings

    standin = Standin(scenario)
    work = Path(tempfile.mkdtemp(prefix="augment-bench-"))
    # The CLI runs on the harness's Prefect server too, so stage and whole run are compared on
    # the same server rather than the whole run also paying for starting one of its own.
    from prefect.settings import get_current_settings

    # AUGMENT_DAEMON_SOCKET: no warm process of the user's runs the commands timed on their own.
    env = {**os.environ, "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": standin.base_url,
           "AUGMENT_DAEMON_SOCKET": str(work / "no-daemon.sock"),
           "AUGMENT_CACHE_DIR": str(work / "cache"), "PREFECT_API_URL": str(get_current_settings().api.url)}
    os.environ.update(env)
    source, template = work / "records.csv", work / "bench.yaml"
    write_records(source, scenario.records)
    template.write_text(TEMPLATE)
    ideal = min(scenario.concurrency / scenario.latency,
                scenario.rpm / 60 if scenario.rpm else float("inf"))
    settings = ProcessSettings(call=CallPolicy(concurrency=scenario.concurrency, rpm=scenario.rpm,
                                               timeout=scenario.timeout))
    result: dict[str, Any] = {"scenario": scenario.name, "records": scenario.records,
                              "concurrency": scenario.concurrency, "ideal_rps": round(ideal, 1)}
    try:
        if scenario.kill_half:
            result.update(kill_and_resume(scenario, source, template, work, env, standin, ideal))
            return result
        from flows.collect import collect
        from flows.process import process

        out = str(work / "out")
        asyncio.run(collect(source=str(source), out=out, id_column="id"))
        started = time.perf_counter()
        started_monotonic = time.monotonic()
        asyncio.run(process(out=out, template=str(template), settings=settings))
        seconds = time.perf_counter() - started
        breakdown = where_time_went(standin.timeline(), started_monotonic, time.monotonic(),
                                    scenario.concurrency)
        report = json.loads((work / "out" / ".augment" / "process" / "report.json").read_text())
        stats = standin.stats()
        rps = scenario.records / seconds
        result.update(failure_reasons(report["parts"]))
        result.update({
            "seconds": round(seconds, 2), "records_per_s": round(rps, 1),
            "efficiency": round(rps / ideal, 3),
            "ok": report["records"]["ok"], "failed": report["records"]["failed"],
            "requests": stats["total_requests"], "429s": stats["rate_limited"],
            "429_share": round(stats["rate_limited"] / max(1, stats["total_requests"]), 4),
            "duplicate_calls": stats["duplicates"], "retries": report["calls"].get("retries"),
            **breakdown,
        })
        if scenario.whole:
            for prefix, warm in (("whole_run", False), ("warm_whole_run", True)):
                standin.reset()
                with command_env(env, work, warm) as run_env:
                    launched = datetime.now(UTC)
                    whole_seconds, _ = run_cli(
                        ["run", str(source), "-t", str(template), "--id-column", "id", "--out",
                         str(work / prefix), "--concurrency", str(scenario.concurrency), "--no-cache"],
                        run_env)
                breakdown = asyncio.run(whole_run_breakdown(launched, whole_seconds))
                result.update({f"{prefix}_seconds": round(whole_seconds, 2),
                               f"{prefix}_efficiency": round(scenario.records / whole_seconds / ideal, 3),
                               f"{prefix}_vs_stage": round(seconds / whole_seconds, 3),
                               f"{prefix}_breakdown_s": breakdown})
    finally:
        standin.stop()
        shutil.rmtree(work, ignore_errors=True)
    return result


async def whole_run_breakdown(launched: datetime, seconds: float) -> dict[str, float]:
    """Where the whole run's time went, from the flow runs the server recorded: the CLI's start
    (interpreter, imports, the parent run's creation), each stage, the gaps between them (a
    stage's run being created), and the CLI's end (the summary, the interpreter's exit)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterStartTime

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            start_time=FlowRunFilterStartTime(after_=launched)))
        names = {f.id: f.name for f in await client.read_flows()}
    runs = sorted((r for r in runs if r.start_time and r.end_time), key=lambda r: r.start_time)
    pipeline = next(r for r in runs if names[r.flow_id] == "augment-pipeline")
    stages = [r for r in runs if r.id != pipeline.id]
    breakdown = {"cli_start": (pipeline.start_time - launched).total_seconds()}
    previous = pipeline.start_time
    for stage in stages:
        breakdown[f"before_{names[stage.flow_id]}"] = (stage.start_time - previous).total_seconds()
        breakdown[names[stage.flow_id]] = (stage.end_time - stage.start_time).total_seconds()
        previous = stage.end_time
    breakdown["pipeline_end"] = (pipeline.end_time - previous).total_seconds()
    breakdown["cli_end"] = seconds - (pipeline.end_time - launched).total_seconds()
    return {name: round(value, 2) for name, value in breakdown.items()}


@contextlib.contextmanager
def command_env(env: dict[str, str], work: Path, warm: bool) -> Iterator[dict[str, str]]:
    """The environment timed commands run with: ENV, or, when WARM, ENV with an `augment daemon`
    of its own that runs them (stopped after)."""
    if not warm:
        yield env
        return
    socket_path = work / "daemon.sock"
    env = {**env, "AUGMENT_DAEMON_SOCKET": str(socket_path)}
    daemon = subprocess.Popen([*AUGMENT, "daemon"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not socket_path.exists():
        if daemon.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"augment daemon did not start: {daemon.communicate()[1][-2000:]}")
        time.sleep(0.1)
    try:
        yield env
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


def kill_and_resume(scenario: Scenario, source: Path, template: Path, work: Path,
                    env: dict[str, str], standin: Standin, ideal: float) -> dict[str, Any]:
    with command_env(env, work, scenario.warm) as run_env:
        return _kill_and_resume(scenario, source, template, work, run_env, standin)


def _kill_and_resume(scenario: Scenario, source: Path, template: Path, work: Path,
                     env: dict[str, str], standin: Standin) -> dict[str, Any]:
    args = ["run", str(source), "-t", str(template), "--id-column", "id", "--out", str(work / "out"),
            "--concurrency", str(scenario.concurrency)]
    process = subprocess.Popen([*AUGMENT, *args], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while (at_kill := standin.stats()["answered"]) < scenario.records // 2:
        time.sleep(0.05)
    killed_at = time.monotonic()  # the stand-in's clock too (CLOCK_MONOTONIC)
    process.kill()  # SIGKILL: no cleanup, no flush beyond what was already committed
    process.wait()
    reaped_ms = round((time.monotonic() - killed_at) * 1000, 1)  # its sockets are closed by then
    first = standin.stats()["answered"]
    seconds, code = run_cli(args, env)
    stats = standin.stats()
    summary = json.loads((work / "out" / "summary.json").read_text())
    # The kernel tears a killed process down before it closes its sockets, so the stand-in can
    # still count answers as delivered after SIGKILL: those prompts are re-sent by any client. In a
    # warm process, the run reads the answers it had sent for after its command is killed.
    return {"answered_before_kill": first, "answered_after_sigkill": first - at_kill,
            "reaped_ms_after_sigkill": reaped_ms,
            "resent_beyond_those": max(0, stats["duplicates"] - (first - at_kill)),
            # For each prompt answered twice, how long before the kill its first answer was written
            # (negative: after it): a few ms is an answer still in transit, unread or uncommitted.
            "resent_first_answered_ms_before_kill": [round((killed_at - t) * 1000, 1)
                                                     for t in stats["duplicates_first_answered"]],
            "answered_total": stats["answered"],
            "distinct_prompts": stats["unique_prompts"], "duplicate_calls": stats["duplicates"],
            "rerun_seconds": round(seconds, 2), "rerun_exit": code, "exported": summary["exported"],
            # Answers the rerun found in the cache (not those in chunks the killed run finished);
            # in a warm process, these include the ones in flight at the kill.
            "rerun_from_cache": summary["provider_calls"].get("cache_hits"),
            "calls_equal_prompts": stats["answered"] == stats["unique_prompts"] == scenario.records}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["custom", "acceptance"], default="custom")
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--jitter", type=float, default=0.1)
    parser.add_argument("--rpm", type=int)
    parser.add_argument("--p429", type=float, default=0.0)
    parser.add_argument("--p500", type=float, default=0.0)
    parser.add_argument("--p-bad-json", type=float, default=0.0)
    parser.add_argument("--p-hang", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--whole", action="store_true", help="also time the whole augment run")
    parser.add_argument("--kill-half", action="store_true", help="kill -9 half way, then rerun")
    parser.add_argument("--warm", action="store_true", help="--kill-half: in a warm process (augment daemon)")
    add_server_argument(parser)
    args = parser.parse_args()
    if args.scenario == "acceptance":
        scenarios = ACCEPTANCE
    else:
        faults = {k: v for k, v in {"p429": args.p429, "p500": args.p500, "p_bad_json": args.p_bad_json,
                                    "p_hang": args.p_hang}.items() if v}
        scenarios = [Scenario("custom", args.records, args.concurrency, args.latency, args.jitter,
                              args.rpm, faults, timeout=args.timeout, whole=args.whole,
                              kill_half=args.kill_half, warm=args.warm)]
    with prefect_server(args.server):
        for scenario in scenarios:
            print(json.dumps({"server": args.server, **measure(scenario)}), flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mib": round(peak)}))


if __name__ == "__main__":
    main()
