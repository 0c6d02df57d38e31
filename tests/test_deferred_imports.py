from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from augment_it.deferred_imports import deferring

ROOT = Path(__file__).resolve().parent.parent


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


# The product's own dependencies that are no dependency of Prefect or of the base image, by the
# name deployments/requirements/*.txt give them and the module they are imported as.
PRODUCT_MODULES = {"great-expectations": "great_expectations", "python-frontmatter": "frontmatter",
                   "trafilatura": "trafilatura", "lxml-html-clean": "lxml_html_clean",
                   "pyairtable": "pyairtable", "databricks-sdk": "databricks", "openai": "openai",
                   "anthropic": "anthropic", "groq": "groq", "py3langid": "py3langid"}


def image_packages(stage: str) -> set[str]:
    """The package names a stage's image installs (its requirements file, -r lines followed)."""
    names: set[str] = set()
    for raw in (ROOT / "deployments" / "requirements" / f"{stage}.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= image_packages(line[3:].removesuffix(".txt"))
        elif line:
            names.add(line)
    return names


@pytest.mark.parametrize("stage", ["collect", "process", "review", "export"])
def test_each_stage_loads_with_only_the_packages_of_its_image(stage: str) -> None:
    """The review image has no Markdown library; importing the sheet reader pulled it in through
    the file sources' package, and the review stage failed in Docker, nowhere else."""
    absent = sorted(module for package, module in PRODUCT_MODULES.items()
                    if package not in image_packages(stage))
    code = (f"import sys\nfor name in {absent!r}:\n    sys.modules[name] = None\n"
            f"import flows.{stage}\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
