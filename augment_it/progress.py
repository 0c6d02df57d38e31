"""Progress of the process stage for whoever shows it: the CLI's bar, when it runs the flows;
and what the person who started the run must be told while it waits for them (how to review).

Deployed runs have no reporter: they show progress as a Prefect progress artifact instead, and
what they tell is in their log.
"""

from __future__ import annotations

from typing import Protocol


class ProgressReporter(Protocol):
    def start(self, total: int) -> None: ...

    def advance(self, done: int = 1) -> None: ...

    def tell(self, message: str) -> None: ...


_reporter: ProgressReporter | None = None


def report_to(reporter: ProgressReporter | None) -> None:
    global _reporter
    _reporter = reporter


def start(total: int) -> None:
    if _reporter is not None:
        _reporter.start(total)


def advance(done: int = 1) -> None:
    if _reporter is not None:
        _reporter.advance(done)


def tell(message: str) -> None:
    if _reporter is not None:
        _reporter.tell(message)
