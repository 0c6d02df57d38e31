"""The one stderr console the CLI talks through, and how it reports a user's mistake."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# soft_wrap: a message stays on one line however narrow the terminal, so a path in it can be
# copied and grepped whole.
console = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> NoReturn:
    """Print `error: message` and exit 2, the CLI's code for bad input."""
    # escape: messages quote user data (paths, field names), which may hold rich markup brackets
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)
