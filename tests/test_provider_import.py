"""The process stage imports the SDKs it will need as it loads, not after its run has started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import sys, threading
import flows.process  # noqa: F401
for thread in threading.enumerate():
    if thread.name == "sdk-import":
        thread.join(60)
print(sorted(name for name in ("openai", "anthropic", "groq", "httpcore2") if name in sys.modules))
"""


def loaded_sdks(**keys: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**env, **keys},
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_only_the_sdks_of_providers_with_a_key_are_imported_early() -> None:
    # httpcore2: the SDKs' HTTP layer, which they otherwise import as the first client is built
    assert loaded_sdks(ANTHROPIC_API_KEY="sk-ant-test") == "['anthropic', 'httpcore2']"
    assert loaded_sdks() == "[]"  # a key kept in a block: its SDK is imported when the model opens
