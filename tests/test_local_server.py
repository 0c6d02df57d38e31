"""The temporary Prefect server `augment run` starts when PREFECT_API_URL names none."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Starts the server as `augment run` does and prints what the test checks, from a directory
# without the project's prefect.toml, as a user's shell usually is.
SCRIPT = """
import json, sys, httpx
sys.path.insert(0, {root!r})
from augment_it.cli.local_server import prefect_api
from augment_it.errors import UserInputError
seen_while_starting = []

def while_starting():  # the command's work while the server starts: the server is its child by then
    from pathlib import Path
    children = "".join(p.read_text() for p in Path("/proc/self/task").glob("*/children")).split()
    seen_while_starting.append([Path(f"/proc/{{c}}/cmdline").read_text().split("\\0")[2] for c in children])
try:
    with prefect_api(while_starting) as url:
        services = httpx.get(url + "/admin/settings", timeout=30).json()["server"]["services"]
        print(json.dumps({{"recorder": services["task_run_recorder"],
                          "persister": services["event_persister"], "while_starting": seen_while_starting}}))
except UserInputError as exc:
    print("error:", exc)
"""


def start_server(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "prefect-home"
    environment = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    environment.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", **env)
    return subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=120)


def test_the_server_writes_no_log_to_the_terminal_and_records_task_runs_in_batches(tmp_path: Path) -> None:
    """Stopping the server mid-flush made Prefect print a traceback after a good run; and a server
    started outside the project's directory missed its prefect.toml, so each new stage waited 2 s
    for SQLite's lock."""
    started = start_server(tmp_path, PREFECT_LOGGING_SERVER_LEVEL="INFO")  # INFO: it logs as it starts
    assert started.returncode == 0, started.stderr
    # Only the command's own line about the server (on stderr, with the CLI's other messages).
    said = started.stderr.splitlines()
    assert len(said) == 1 and said[0].startswith("Prefect UI of this run: http://127.0.0.1:"), started.stderr
    services = json.loads(started.stdout)
    assert services["recorder"]["batch_size"] == 100 and services["recorder"]["flush_interval"] == 1
    assert services["persister"]["batch_size"] == 1000 and services["persister"]["flush_interval"] == 1
    # The command's own work (importing what its stages use) overlaps the server's start.
    assert services["while_starting"] == [["augment_it.cli.server_process"]]
    assert list((tmp_path / "prefect-home").glob("augment-server-*.log")) == []  # stopped cleanly


def test_a_server_that_cannot_start_says_why_and_where_its_log_is(tmp_path: Path) -> None:
    """It was reported as "no free port" after three attempts, each printing a traceback."""
    started = start_server(tmp_path, PREFECT_API_DATABASE_CONNECTION_URL="sqlite+aiosqlite:////nonexistent/x.db")
    assert started.stderr == ""
    said = started.stdout.strip()
    assert said.startswith("error: the temporary Prefect server exited with code 3: ")
    assert "unable to open database file" in said and said.endswith("Set PREFECT_API_URL to a running server")
    [log] = (tmp_path / "prefect-home").glob("augment-server-*.log")
    assert f"its log: {log}." in said and "unable to open database file" in log.read_text()


def test_the_temporary_server_defaults_are_the_projects_prefect_toml() -> None:
    import tomllib

    from augment_it.cli.local_server import SERVER_DEFAULTS

    services = tomllib.loads((ROOT / "prefect.toml").read_text())["server"]["services"]
    in_toml = {f"PREFECT_SERVER_SERVICES_{service}_{name}".upper(): str(value)
               for service, settings in services.items() for name, value in settings.items()}
    assert in_toml == {k: v for k, v in SERVER_DEFAULTS.items() if k.startswith("PREFECT_SERVER_SERVICES_")}
