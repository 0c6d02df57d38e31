from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from augment_it.deferred_imports import deferring


def test_a_deferred_module_runs_on_first_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = tmp_path / "heavy_probe.ran"
    (tmp_path / "heavy_probe.py").write_text(f"open({str(ran)!r}, 'w').close()\nVALUE = 42\n")
    (tmp_path / "light_probe.py").write_text("import heavy_probe\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "heavy_probe", raising=False)
    monkeypatch.delitem(sys.modules, "light_probe", raising=False)

    with deferring("heavy_probe"):
        import light_probe  # noqa: F401

    assert not ran.exists()
    assert sys.modules["heavy_probe"].VALUE == 42
    assert ran.exists()


def test_validation_imports_great_expectations_without_scipy_stats() -> None:
    """Guards the collect stage's start-up: GX's scipy.stats import stays unrun through a validation."""
    script = """
import sys
import pandas as pd
from augment_it.validation import RecordSchema, validate_records
result = validate_records(pd.DataFrame({"id": ["a", "a"], "_row": [2, 3]}), RecordSchema(id_column="id"))
assert len(result.quarantined) == 2, result
print(type(sys.modules["scipy.stats"]).__name__, type(sys.modules["altair"]).__name__)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.stdout.split() == ["_LazyModule", "_LazyModule"]
