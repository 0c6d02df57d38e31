"""`augment run` started without PREFECT_API_URL: Ctrl-C or SIGTERM ends it at once, its server with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = """name: interrupt
model: gpt-4o-mini
prompt: "Label record {{ id }}"
output: {label: string}
"""


def command_servers() -> set[int]:
    """Pids of the Prefect servers `augment run` starts for itself (augment_it/cli/server_process)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"augment_it.cli.server_process" in cmdline:
                pids.add(int(entry.name))
    return pids


def paused_review_of(command: subprocess.Popen[bytes], out: Path) -> str:
    """The id of the review run the COMMAND's run into OUT waits in, once it is paused."""
    import asyncio
    import json

    from augment_it.cli.review_client import read_review_run

    pending = out / ".augment" / "review" / "pending.json"
    deadline = time.time() + 120
    while not pending.exists():
        assert command.poll() is None and time.time() < deadline, "the run ended before its review"
        time.sleep(0.2)
    run_id = json.loads(pending.read_text())["flow_run_id"]
    while not asyncio.run(read_review_run(run_id)).paused:
        assert time.time() < deadline, "the review run never paused"
        time.sleep(0.2)
    return str(run_id)


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code", "said"), [(signal.SIGINT, 130, "interrupted"),
                                                      (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_ends_the_run_at_once_and_its_temporary_server_with_it(
        signum: int, code: int, said: str, llm, tmp_path: Path) -> None:
    """Prefect's own temporary server shared the terminal's Ctrl-C: it stopped first, and the run
    spent a minute failing to report its end to it, then exited 1 under a wall of tracebacks.
    SIGTERM (a service manager, `timeout`) ended it with Prefect's TerminationSignal traceback."""
    llm.configure(latency=1.0)
    source = tmp_path / "records.csv"
    source.write_text("id\n" + "".join(f"r{i}\n" for i in range(200)))
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    before = command_servers()
    # A group of its own, as a terminal's foreground job: Ctrl-C signals the whole group.
    run = subprocess.Popen([sys.executable, "-m", "augment_it.cli.main", "run", str(source), "-t",
                            str(tmp_path / "t.yaml"), "--id-column", "id", "--out", str(tmp_path / "out"),
                            "--concurrency", "4"], cwd=ROOT, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while llm.stats()["answered"] < 8:
            assert run.poll() is None and time.time() < deadline, "the run ended before its calls"
            time.sleep(0.1)
        assert len(command_servers() - before) == 1
        # Ctrl-C signals the terminal's whole foreground group; a service manager its main process.
        if signum == signal.SIGINT:
            os.killpg(run.pid, signum)
        else:
            os.kill(run.pid, signum)
        printed, _ = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == code, printed[-3000:]
    assert f"{said}: every answer received is kept; the same command goes on" in printed
    assert "Error logging to API" not in printed and "Traceback" not in printed, printed[-3000:]
    assert command_servers() - before == set()


def test_a_sigterm_prefect_handled_in_a_flow_run_still_reaches_the_command() -> None:
    """The test above failed once in CI with exit -15: the signal landed where Prefect's engine
    handled it, and Prefect then sent it again to the handler it had found, Python's default."""
    script = (
        "import signal, sys\n"
        "from prefect.exceptions import TerminationSignal\n"
        "from prefect.utilities.engine import capture_sigterm\n"
        "from augment_it.cli.run import raise_on_sigterm\n"
        "raise_on_sigterm()\n"
        "try:\n"
        "    with capture_sigterm():  # as a flow run's engine, after its crash handling\n"
        "        raise TerminationSignal(signal=signal.SIGTERM)\n"
        "except TerminationSignal:\n"
        "    print('reached the command')\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "reached the command"), done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
@pytest.mark.parametrize(("signum", "piped"), [(signal.SIGINT, True), (signal.SIGHUP, False)])
def test_a_command_ended_while_it_waits_for_review_leaves_no_run_waiting(
        signum: int, piped: bool, llm, tmp_path: Path) -> None:
    """Ctrl-C of `augment run ... | tee run.log` ended tee too; Prefect's crash report then failed on
    the closed pipe and the review run stayed paused: `augment review list` showed it waiting, and
    `approve` took a decision that nobody would act on. A closed terminal (SIGHUP) ended the
    command on the spot, with the same result."""
    import asyncio
    import shlex

    from prefect.settings import PREFECT_API_URL

    from augment_it.cli.review_client import paused_reviews, read_review_run

    source = tmp_path / "records.csv"
    source.write_text("id\n" + "".join(f"r{i}\n" for i in range(8)))
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    command = shlex.join([sys.executable, "-m", "augment_it.cli.main", "run", str(source), "-t",
                          str(tmp_path / "t.yaml"), "--id-column", "id", "--out", str(tmp_path / "out"),
                          "--review", "cli"])
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    # A terminal's foreground job: the command (and its `| cat`) in one group, which the signal reaches.
    job = f"{command} 2>&1 | cat" if piped else f"exec {command}"
    shell = subprocess.Popen(["sh", "-c", job], cwd=ROOT, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_id = paused_review_of(shell, tmp_path / "out")
        os.killpg(shell.pid, signum)
        shell.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)
    if not piped:
        assert shell.returncode == 128 + signum
    ended = asyncio.run(read_review_run(run_id))
    assert not ended.paused and ended.state in {"Cancelled", "Crashed"}, ended.state
    assert run_id not in {run.id for run in asyncio.run(paused_reviews())}


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_next_run_cancels_the_review_a_killed_command_left_waiting(llm, tmp_path: Path) -> None:
    """A command killed outright (SIGKILL, an OOM kill, a reboot) cannot cancel its review: that
    run stayed paused, shown waiting by `augment review list`. The next run into the same --out,
    finding the killed run's lock, cancels it."""
    import asyncio
    import json

    from prefect.settings import PREFECT_API_URL

    from augment_it.cli.review_client import paused_reviews, read_review_run

    source = tmp_path / "records.csv"
    source.write_text("id\n" + "".join(f"r{i}\n" for i in range(8)))
    (tmp_path / "t.yaml").write_text(TEMPLATE)
    command = [sys.executable, "-m", "augment_it.cli.main", "run", str(source), "-t",
               str(tmp_path / "t.yaml"), "--id-column", "id", "--out", str(tmp_path / "out")]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    first = subprocess.Popen([*command, "--review", "cli"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        run_id = paused_review_of(first, tmp_path / "out")
    finally:
        first.kill()
        first.wait()
    assert asyncio.run(read_review_run(run_id)).paused  # nothing could cancel it
    second = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["exported"] == 8
    ended = asyncio.run(read_review_run(run_id))
    assert ended.state == "Cancelled" and run_id not in {run.id for run in asyncio.run(paused_reviews())}
