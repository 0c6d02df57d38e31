"""Where each stage keeps its data: the references stages hand each other.

Everything lives below one run directory (a local path or any fsspec URL), so a stage running
in another process or container needs only that URL to find its inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import fsspec
import pandas as pd

from augment_it.errors import UserInputError
from augment_it.records import from_storable, plain, to_storable
from augment_it.xlsx import write_xlsx

WORK_DIR = ".augment"


@dataclass(frozen=True)
class RunLayout:
    out: str  # the run directory: exports at the top, stage data below WORK_DIR

    def _join(self, *parts: str) -> str:
        return "/".join([self.out.rstrip("/"), *parts])

    @property
    def lock(self) -> str:  # who runs in this directory now (run_lock.py)
        return self._join(WORK_DIR, "lock.json")

    # collect
    @property
    def collected(self) -> str:
        return self._join(WORK_DIR, "collect", "records.parquet")

    @property
    def quarantine(self) -> str:
        return self._join(WORK_DIR, "collect", "quarantined.parquet")

    @property
    def validation_report(self) -> str:
        return self._join(WORK_DIR, "collect", "validation.json")

    # process
    @property
    def process_parts(self) -> str:
        return self._join(WORK_DIR, "process", "parts")

    def process_part(self, index: int, fingerprint: str) -> str:
        return f"{self.process_parts}/part-{index:05d}-{fingerprint}.parquet"

    @property
    def process_report(self) -> str:
        return self._join(WORK_DIR, "process", "report.json")

    @property
    def preflight(self) -> str:  # what the run would ask and cost (preflight.py)
        return self._join(WORK_DIR, "process", "preflight.json")

    # review
    @property
    def decision(self) -> str:
        return self._join(WORK_DIR, "review", "decision.json")

    @property
    def review_ledger(self) -> str:  # human decisions kept for reruns (review_ledger.py)
        return self._join(WORK_DIR, "review", "ledger.json")

    @property
    def pending_review(self) -> str:
        return self._join(WORK_DIR, "review", "pending.json")

    # export
    def export(self, name: str, fmt: str) -> str:
        return self._join(f"{name}.{fmt}")

    @property
    def summary(self) -> str:
        return self._join("summary.json")

    @property
    def decisions_log(self) -> str:
        return self._join("decisions.jsonl")


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def check_run_dir(out: str) -> None:
    """Refuse a run directory that names a file: every stage would fail writing beneath it."""
    fs, path = filesystem(out)
    if fs.exists(path) and not fs.isdir(path):
        raise UserInputError(f"--out {out} is a file; name a folder (it is created if missing)")


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def remove(url: str) -> None:
    """Delete the file at URL, if there is one."""
    fs, path = filesystem(url)
    if fs.exists(path):
        fs.rm(path)


def remove_others(folder: str, keep: list[str]) -> None:
    """Delete the files in FOLDER other than those named in KEEP (URLs, as RunLayout makes them)."""
    fs, path = filesystem(folder)
    kept = {filesystem(url)[1] for url in keep}
    for name in fs.ls(path, detail=False) if fs.exists(path) else []:
        if name not in kept:
            fs.rm(name)


def write_frame(frame: pd.DataFrame, url: str, fmt: str = "parquet") -> None:
    """Write a whole file atomically (temp name, then rename) so a rerun replaces, never appends."""
    fs, path = filesystem(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.tmp"
    storable = to_storable(frame, "csv" if fmt == "xlsx" else fmt)  # a workbook holds a CSV's values
    with fs.open(tmp, "wb") as handle:
        if fmt == "parquet":
            storable.to_parquet(handle, index=False)
        elif fmt == "csv":
            handle.write(storable.to_csv(index=False).encode("utf-8"))
        elif fmt == "jsonl":
            handle.write(_jsonl(storable).encode("utf-8"))
        elif fmt == "xlsx":
            write_xlsx(storable, handle, path.rsplit("/", 1)[-1].rsplit(".", 1)[0])
        else:
            raise ValueError(f"unknown output format {fmt!r}: use parquet, csv, jsonl or xlsx")
    fs.mv(tmp, path)


def _jsonl(frame: pd.DataFrame) -> str:
    """One JSON object a line. Not `DataFrame.to_json`: it cuts floats to 10 significant digits
    and writes timestamps as epoch milliseconds; here floats keep every digit and times are ISO."""
    rows = frame.to_dict(orient="records")
    return "".join(json.dumps(plain(row, strict_json=True), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":"), default=str) + "\n" for row in rows)


def read_frame(url: str) -> pd.DataFrame:
    fs, path = filesystem(url)
    with fs.open(path, "rb") as handle:
        return from_storable(pd.read_parquet(handle))


def write_text(text: str, url: str) -> None:
    """Write a whole text file atomically (temp name, then rename), creating its folder."""
    fs, path = filesystem(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        handle.write(text)
    fs.mv(f"{path}.tmp", path)


def write_json(data: Any, url: str) -> None:
    write_text(json.dumps(data, indent=2, default=str), url)


def read_json(url: str) -> Any:
    fs, path = filesystem(url)
    with fs.open(path, "r") as handle:
        return json.load(handle)
