from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
# `augment run` in a subprocess starts a temporary Prefect server on PREFECT_HOME's database: a
# test's run killed while paused would otherwise wait in the developer's `augment review list`.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="augment-it-tests-prefect-")

import pytest

atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)

DATA = Path(__file__).parent / "data"
EXAMPLES = Path(__file__).parent.parent / "examples"
PROVIDER_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
                "GROQ_API_KEY", "GROQ_BASE_URL")


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """A real Prefect server (SQLite) for the whole session; starting one takes about 10 s."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's keys, base URLs or answer cache."""
    for name in PROVIDER_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUGMENT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def llm_server() -> Iterator[object]:
    """One local server speaking the OpenAI, Groq and Anthropic wire formats."""
    from tests.standins.llm_server import StandinConfig, StandinServer

    with StandinServer(StandinConfig()) as server:
        yield server


@pytest.fixture
def llm(llm_server: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The stand-in, reset, with every provider's SDK pointed at it through its own variables."""
    from dataclasses import asdict

    from tests.standins.llm_server import StandinConfig

    llm_server.configure(**asdict(StandinConfig()))  # type: ignore[attr-defined]
    llm_server.reset()  # type: ignore[attr-defined]
    llm_server.clear_scripts()  # type: ignore[attr-defined]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-openai")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.openai_base_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", llm_server.anthropic_base_url)  # type: ignore[attr-defined]
    monkeypatch.setenv("GROQ_API_KEY", "gsk-test")
    monkeypatch.setenv("GROQ_BASE_URL", llm_server.groq_base_url)  # type: ignore[attr-defined]
    yield llm_server
