"""One pipeline run at a time per run directory."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import typer

from augment_it import run_lock
from augment_it.cli.run import check_inputs
from augment_it.run_lock import RunDirInUse, RunDirLock, holding_run_dir
from augment_it.settings import ProcessSettings
from tests.conftest import EXAMPLES
from tests.pipeline import BackgroundRun, assert_every_record_once, paused_review_run, resume, run_pipeline

COMPANIES = EXAMPLES / "data" / "companies.csv"
TEMPLATE = EXAMPLES / "templates" / "company-profile.yaml"


def lock_file(out: Path) -> Path:
    return out / ".augment" / "lock.json"


def test_a_held_directory_is_refused_until_released(tmp_path: Path) -> None:
    with holding_run_dir(str(tmp_path), owner="run-a"):
        holder = json.loads(lock_file(tmp_path).read_text())
        assert (holder["owner"], holder["host"]) == ("run-a", socket.gethostname())
        with pytest.raises(RunDirInUse, match=rf"--out {tmp_path} is in use by another run \(flow run "
                                               r"run-a, process \d+ on "):
            RunDirLock(str(tmp_path), "run-b").acquire()
        with holding_run_dir(str(tmp_path), owner="run-a"):  # the same run again (a retry) may
            pass
    assert not lock_file(tmp_path).exists()
    with holding_run_dir(str(tmp_path), owner="run-b"):
        assert json.loads(lock_file(tmp_path).read_text())["owner"] == "run-b"


def test_a_run_that_is_finishing_is_waited_for_not_refused(tmp_path: Path) -> None:
    """A warm process's run whose command was killed keeps the answers it had sent, then ends: a
    rerun started at once waits for it (cli/daemon.py)."""
    import threading

    held, go_on = threading.Event(), threading.Event()

    def finishing_run() -> None:
        with holding_run_dir(str(tmp_path), owner="killed-command"):
            run_lock.abandon_held()
            held.set()
            go_on.wait(10)

    thread = threading.Thread(target=finishing_run)
    thread.start()
    held.wait(10)
    assert json.loads(lock_file(tmp_path).read_text())["finishing"] is True
    threading.Timer(0.5, go_on.set).start()
    started = time.monotonic()
    with holding_run_dir(str(tmp_path), owner="rerun"):
        assert time.monotonic() - started >= 0.4
    thread.join()


def test_the_command_refuses_a_held_directory_before_it_starts_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The refusal came from the pipeline flow, after a temporary server had started, among
    Prefect's error lines."""
    with holding_run_dir(str(tmp_path), owner="run-a"), pytest.raises(typer.Exit) as refused:
        check_inputs(str(COMPANIES), str(TEMPLATE), ProcessSettings(), str(tmp_path))
    assert refused.value.exit_code == 2
    assert f"error: --out {tmp_path} is in use by another run (flow run run-a" in capsys.readouterr().err


def test_a_killed_runs_lock_is_taken_over(tmp_path: Path) -> None:
    """On its own host a killed run's process is gone; from elsewhere it is no longer seen."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    lock_file(tmp_path).parent.mkdir(parents=True)
    lock_file(tmp_path).write_text(json.dumps({"owner": "killed", "host": socket.gethostname(),
                                               "pid": int(gone.stdout), "seen": time.time()}))
    with holding_run_dir(str(tmp_path), owner="next"):
        pass
    elsewhere = {"owner": "container", "host": "another-host", "pid": 1}
    lock_file(tmp_path).parent.mkdir(parents=True, exist_ok=True)
    lock_file(tmp_path).write_text(json.dumps({**elsewhere, "seen": time.time() - 5}))
    with pytest.raises(RunDirInUse, match="process 1 on another-host"):
        RunDirLock(str(tmp_path), "next").acquire()
    long_ago = time.time() - run_lock.STALE_SECONDS - 1
    lock_file(tmp_path).write_text(json.dumps({**elsewhere, "seen": long_ago}))
    with holding_run_dir(str(tmp_path), owner="next"):
        pass


def test_the_holder_is_seen_while_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_lock, "HEARTBEAT_SECONDS", 0.05)
    with holding_run_dir(str(tmp_path), owner="long"):
        first = json.loads(lock_file(tmp_path).read_text())["seen"]
        time.sleep(0.3)
        assert json.loads(lock_file(tmp_path).read_text())["seen"] > first
        # Taken over by a run that found this one gone (unseen too long): never taken back.
        lock_file(tmp_path).write_text(json.dumps({"owner": "next", "host": "h", "pid": 1, "seen": 0}))
        time.sleep(0.3)
        assert json.loads(lock_file(tmp_path).read_text())["owner"] == "next"
    assert json.loads(lock_file(tmp_path).read_text())["owner"] == "next"


@pytest.mark.usefixtures("prefect_api")
def test_a_run_into_a_directory_whose_run_waits_for_review_is_refused(tmp_path: Path) -> None:
    """A schedule that fired while the last run still waited for review overwrote its stage files,
    and that review's decision was then applied to the new run's records."""
    started = time.time()
    waiting = BackgroundRun(COMPANIES, TEMPLATE, tmp_path, review_policy="ui", id_column="company_id",
                            settings=ProcessSettings(provider="none"))
    waiting.start()
    run_id = asyncio.run(paused_review_run(after=started))
    second = run_pipeline(COMPANIES, TEMPLATE, tmp_path, id_column="company_id",
                          settings=ProcessSettings(provider="none"))
    assert second.is_failed() and f"--out {tmp_path} is in use by another run" in str(second.message)
    asyncio.run(resume(run_id, {"approve": True, "reject_ids": ["c002"], "reviewer": "Ada"}))
    waiting.join(120)
    ids = assert_every_record_once(tmp_path, waiting.state.result())
    assert ids["rejected"] == ["c002"] and not lock_file(tmp_path).exists()


def test_of_runs_claiming_a_directory_at_once_one_holds_it(tmp_path: Path) -> None:
    """Claims on a local file system take turns: exactly one of them wins, the rest are refused."""
    claims, outcomes, held_locks = 8, [], []
    start = threading.Barrier(claims)

    def claim(owner: str) -> None:
        lock = RunDirLock(str(tmp_path), owner)
        start.wait()
        try:
            lock.acquire()
            outcomes.append(("held", owner))
            held_locks.append(lock)
        except RunDirInUse:
            outcomes.append(("refused", owner))

    threads = [threading.Thread(target=claim, args=(f"run-{i}",)) for i in range(claims)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = [owner for outcome, owner in outcomes if outcome == "held"]
    assert len(held) == 1 and len(outcomes) == claims
    assert json.loads(lock_file(tmp_path).read_text())["owner"] == held[0]
    held_locks[0].release()
