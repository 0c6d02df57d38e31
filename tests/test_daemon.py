"""`augment daemon`: commands run in a fork of a warm process, as they would on their own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from augment_it.run_lock import process_exists

ROOT = Path(__file__).resolve().parent.parent
AUGMENT = [sys.executable, "-m", "augment_it.cli.launcher"]  # what the `augment` script runs
TEMPLATE = """name: warm
model: gpt-4o-mini
prompt: "Label record {{ id }}"
output: {label: string}
"""

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


class WarmProcess:
    def __init__(self, directory: Path) -> None:
        from prefect.settings import PREFECT_API_URL

        self.socket = directory / "daemon.sock"
        self.log = directory / "daemon.log"
        self.env = {**os.environ, "AUGMENT_DAEMON_SOCKET": str(self.socket),
                    "PREFECT_API_URL": str(PREFECT_API_URL.value())}
        with self.log.open("w") as log:
            self.process = subprocess.Popen([*AUGMENT, "daemon"], cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while not self.socket.exists():
            assert self.process.poll() is None and time.time() < deadline, self.log.read_text()
            time.sleep(0.1)

    def command(self, args: list[str], cwd: Path, **popen: object) -> subprocess.Popen[str]:
        """`augment ARGS` in CWD, with the test's environment as it is now (the stand-in's)."""
        env = {**os.environ, **{k: self.env[k] for k in ("AUGMENT_DAEMON_SOCKET", "PREFECT_API_URL")}}
        streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
        return subprocess.Popen([*AUGMENT, *args], cwd=cwd, env=env, text=True, **streams)

    def forked(self) -> list[int]:
        """The pids of the commands it has run, from its log."""
        return [int(line.split(":")[0].removeprefix("pid "))
                for line in self.log.read_text().splitlines() if line.startswith("pid ")]


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarmProcess]:
    warm = WarmProcess(tmp_path_factory.mktemp("warm"))
    yield warm
    stopped = subprocess.run([*AUGMENT, "daemon", "--stop"], env=warm.env, capture_output=True, text=True,
                             timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert warm.process.wait(30) == 0
    assert not warm.socket.exists()


def records(directory: Path, count: int) -> None:
    (directory / "records.csv").write_text("id\n" + "".join(f"r{i}\n" for i in range(count)))
    (directory / "t.yaml").write_text(TEMPLATE)


RUN = ["run", "records.csv", "-t", "t.yaml", "--id-column", "id", "--out", "out"]


def test_a_command_runs_in_the_warm_process_with_its_own_directory_environment_and_streams(
        warm: WarmProcess, llm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm process started without the stand-in's variables and in another directory: the
    command's own (relative paths, OPENAI_BASE_URL) are the ones its run uses."""
    records(tmp_path, 5)
    run = warm.command(RUN, cwd=tmp_path)
    _, errors = run.communicate(timeout=300)
    assert run.returncode == 0, errors[-3000:]
    assert "exported" in errors and "AI step: openai / gpt-4o-mini: 5 answered" in errors, errors[-3000:]
    assert len(pd.read_parquet(tmp_path / "out" / "exported.parquet")) == 5
    assert llm.stats()["answered"] == 5
    assert f"augment run {' '.join(RUN[1:])} (in {tmp_path})" in warm.log.read_text()
    assert "\x1b[" not in errors  # a pipe, not the warm process's terminal: no colours

    # From the warm process's own directory, and only a PREFECT_ variable different: read anew too.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")
    logged = warm.command(["run", str(tmp_path / "records.csv"), "-t", str(tmp_path / "t.yaml"),
                           "--id-column", "id", "--out", str(tmp_path / "out-info")], cwd=ROOT)
    _, errors = logged.communicate(timeout=300)
    assert logged.returncode == 0, errors[-3000:]
    assert "Finished in state Completed()" in errors, errors[-3000:]

    missing = warm.command(["run", "missing.csv", "-t", "t.yaml"], cwd=tmp_path)
    _, errors = missing.communicate(timeout=60)
    assert missing.returncode == 2
    assert "error: source" in errors and "missing.csv does not exist" in errors, errors


def test_a_command_on_a_terminal_writes_as_to_a_terminal(warm: WarmProcess, tmp_path: Path) -> None:
    """The warm process writes to a file; the command's stderr is a terminal: its error is red."""
    import pty

    terminal, command_side = pty.openpty()
    refused = warm.command(["run", "missing.csv", "-t", "t.yaml"], cwd=tmp_path, stderr=command_side)
    os.close(command_side)
    assert refused.wait(60) == 2
    written = b""
    with contextlib.suppress(OSError):  # EIO once the command's side is closed and read through
        while chunk := os.read(terminal, 4096):
            written += chunk
    os.close(terminal)
    assert b"\x1b[31merror:" in written, written


def test_a_command_killed_outright_leaves_its_run_to_keep_the_answers_it_sent(
        warm: WarmProcess, llm, tmp_path: Path) -> None:
    """kill -9 of the command: its run sends nothing more, reads the answers already on their way
    into the cache and ends; the rerun, started at once, waits for it and sends only the rest.
    Every prompt is answered once across both runs, not only the ones answered before the kill.
    Two chunks (200 records each at this concurrency), so that calls wait for a slot at the kill."""
    llm.configure(latency=0.5)
    records(tmp_path, 400)
    args = [*RUN, "--concurrency", "16"]
    first = warm.command(args, cwd=tmp_path)
    deadline = time.time() + 120
    while llm.stats()["answered"] < 48:
        assert first.poll() is None and time.time() < deadline, first.communicate()[1][-3000:]
        time.sleep(0.05)
    first.kill()
    first.wait()
    at_kill = llm.stats()["answered"]
    rerun = warm.command(args, cwd=tmp_path)
    try:
        _, errors = rerun.communicate(timeout=120)
    finally:
        rerun.kill()
    assert rerun.returncode == 0, errors[-3000:]
    stats = llm.stats()
    kept = json.loads((tmp_path / "out" / "summary.json").read_text())["provider_calls"]["cache_hits"]
    assert kept >= at_kill + 16 / 2, (kept, at_kill)  # the calls in flight at the kill, not only before
    assert stats["answered"] > kept  # and the rerun sent the rest
    assert (stats["answered"], stats["unique_prompts"], stats["duplicates"]) == (400, 400, 0)
    assert len(pd.read_parquet(tmp_path / "out" / "exported.parquet")) == 400
    killed_run = warm.forked()[-2]
    assert not process_exists(killed_run)


def test_ctrl_c_of_the_command_interrupts_its_run(warm: WarmProcess, llm, tmp_path: Path) -> None:
    llm.configure(latency=1.0)
    records(tmp_path, 100)
    run = warm.command([*RUN, "--concurrency", "4"], cwd=tmp_path, start_new_session=True)
    deadline = time.time() + 120
    while llm.stats()["answered"] < 4:
        assert run.poll() is None and time.time() < deadline, run.communicate()[1][-3000:]
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)  # a terminal's Ctrl-C: the command's group, not the run's
    _, errors = run.communicate(timeout=60)
    assert run.returncode == 130, errors[-3000:]
    assert "interrupted: every answer received is kept" in errors
    assert "Traceback" not in errors, errors[-3000:]


def test_a_warm_process_whose_code_changed_stops_and_the_command_runs_on_its_own(tmp_path: Path) -> None:
    """Its modules in memory are no longer the code on disk (an edit, an upgrade)."""
    warm = WarmProcess(tmp_path)
    changed = ROOT / "augment_it" / "cli" / "plan.py"
    os.utime(changed)  # last in this module: the shared warm process above would stop too
    helped = warm.command(["--help"], cwd=tmp_path)
    printed, errors = helped.communicate(timeout=120)
    assert helped.returncode == 0, errors
    assert f"augment: the warm process stopped: {changed} changed since it imported it; running " \
           "without it" in errors
    assert "Usage: augment" in printed
    assert warm.process.wait(30) == 0
    assert not warm.socket.exists()
