"""The one stderr console the CLI talks through, and how it reports a user's mistake."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# soft_wrap: a message stays on one line however narrow the terminal, so a path in it can be
# copied and grepped whole.
CONSOLE_OPTIONS = {"stderr": True, "soft_wrap": True}
console = Console(**CONSOLE_OPTIONS)


def reopen_console() -> None:
    """Look again at what stderr is (a terminal, its colours), for a process forked after the
    console was made (cli/daemon.py); every module holds this one console."""
    console.__init__(**CONSOLE_OPTIONS)  # type: ignore[misc]


def fail(message: str) -> NoReturn:
    """Print `error: message` and exit 2, the CLI's code for bad input."""
    # escape: messages quote user data (paths, field names), which may hold rich markup brackets
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)
