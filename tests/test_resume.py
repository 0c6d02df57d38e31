"""A run killed with SIGKILL half way resumes without paying twice for any answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.test_cli_interrupt import command_servers

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 400
TEMPLATE = """name: resume
model: gpt-4o-mini
prompt: "Label record {{ id }}: {{ text }}"
output: {label: string, score: integer}
"""


@pytest.mark.slow
def test_kill_9_half_way_then_rerun_sends_only_unanswered_prompts(llm, tmp_path: Path) -> None:
    llm.configure(latency=0.05, jitter=0.02)
    source = tmp_path / "records.csv"
    source.write_text("id,text\n" + "".join(f"r{i},record number {i}\n" for i in range(RECORDS)))
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    command = [sys.executable, "-m", "augment_it.cli.main", "run", str(source),
               "-t", str(tmp_path / "t.yaml"), "--id-column", "id", "--out", str(tmp_path / "out"),
               "--concurrency", "8"]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    # A group of its own, as a terminal's job; the run's temporary Prefect server, in a session of
    # its own, stops itself once the run is gone.
    servers = command_servers()
    first = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while llm.stats()["answered"] < RECORDS // 2:
        assert first.poll() is None and time.time() < deadline, "the first run ended before half way"
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    time.sleep(0.5)  # requests in flight at the kill finish (or are dropped) on the server side
    answered_before = llm.stats()["answered"]
    assert answered_before < RECORDS
    deadline = time.time() + 10
    while command_servers() - servers:
        assert time.time() < deadline, "the killed run's temporary server outlived it"
        time.sleep(0.2)
    assert list(Path(os.environ["PREFECT_HOME"]).glob(f"augment-server-{first.pid}.log")) == []

    rerun = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    stats = llm.stats()
    exported = pd.read_parquet(tmp_path / "out" / "exported.parquet")
    assert len(exported) == RECORDS and set(exported["_ai_status"]) == {"ok"}
    assert stats["unique_prompts"] == RECORDS
    # Every answer the first run received was committed and replayed from the cache; the only
    # prompts sent twice are those whose answers were still in flight at the kill (at most one
    # per concurrency slot): no client can keep an answer it never read.
    resent = stats["answered"] - RECORDS
    assert 0 <= resent <= 8, stats
    assert exported["_cached"].sum() > 0  # the rerun replayed answers from the first run


def test_a_part_written_before_cached_input_tokens_existed_is_still_counted() -> None:
    """A run that crashed under an earlier release resumes its finished parts after an upgrade."""
    from tasks.process import chunk_counts

    old_part = pd.DataFrame({"_id": ["a", "b"], "_ai_status": ["ok", "ok"], "_cached": [False, True],
                             "_input_tokens": pd.array([10, 0], dtype="Int64"),
                             "_output_tokens": pd.array([5, 0], dtype="Int64"), "_cost_usd": [0.1, 0.0]})
    counts = chunk_counts(old_part)
    assert (counts["input_tokens"], counts["cached_input_tokens"], counts["ok"]) == (10, 0, 2)


@pytest.mark.usefixtures("prefect_api")
def test_two_runs_asking_the_same_prompts_at_once_pay_for_each_answer_once(llm, tmp_path: Path) -> None:
    """A schedule firing while someone runs the same file by hand into another --out: each prompt
    is sent by one run, and the other waits for its answer (the answer cache's claims)."""
    from prefect.settings import PREFECT_API_URL

    llm.configure(latency=0.5)
    records = 60
    source = tmp_path / "records.csv"
    source.write_text("id,text\n" + "".join(f"r{i},record number {i}\n" for i in range(records)))
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    runs = [subprocess.Popen([sys.executable, "-m", "augment_it.cli.main", "run", str(source), "-t",
                              str(tmp_path / "t.yaml"), "--id-column", "id", "--out", str(tmp_path / out),
                              "--concurrency", "4"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for out in ("a", "b")]
    for run in runs:
        _, errors = run.communicate(timeout=300)
        assert run.returncode == 0, errors[-2000:]
    stats = llm.stats()
    assert stats["answered"] == records and stats["duplicates"] == 0, stats
    for out in ("a", "b"):
        exported = pd.read_parquet(tmp_path / out / "exported.parquet")
        assert len(exported) == records and set(exported["_ai_status"]) == {"ok"}
