"""User errors end a task or flow as a Failed state with one clear message and no traceback.

A source that is empty or a template with a typo is not a bug: Prefect should show the sentence
that says what to fix, in the UI and in the CLI, rather than a stack trace. What the domain code
only warns about (a column dropped, a field that cannot be checked) goes to the run's log too.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prefect import get_run_logger
from prefect.states import Failed, State

from augment_it.errors import InputNotice, UserInputError

F = TypeVar("F", bound=Callable[..., Any])


class StageStopped(UserInputError):
    """A task or stage ended Failed; the flow stops with the same message."""


def _no_empty_traceback(record: logging.LogRecord) -> bool:
    # Prefect logs a task that returned a Failed state with exc_info=True outside any `except`, so
    # every user error printed a "NoneType: None" line, on the terminal and in the UI's log.
    if record.exc_info == (None, None, None):
        record.exc_info = None
    return True


logging.getLogger("prefect.task_runs").addFilter(_no_empty_traceback)


def fails_cleanly(fn: F) -> F:
    """Decorate an async task or flow function (under @task/@flow; every stage's are async, see
    flows/collect.py): user errors become Failed states, user warnings lines of the run's log."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", InputNotice)
                return await fn(*args, **kwargs)
        except UserInputError as exc:
            return Failed(message=str(exc))
        finally:
            _report(caught)

    return _resolved(run, fn)


def _report(caught: list[warnings.WarningMessage]) -> None:
    # augment_it never imports Prefect: its notices to the user are warnings, which on stderr would
    # miss the UI and a deployment's logs. Other warnings are shown as they would have been.
    for warning in caught:
        if issubclass(warning.category, InputNotice):
            get_run_logger().warning(str(warning.message))
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)


def _resolved(wrapper: Callable[..., Any], fn: F) -> F:
    # Prefect builds the parameter schema from the signature; string annotations (PEP 563)
    # must be resolved in the wrapped function's module, not in this one.
    wrapper.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
    wrapper.__annotations__ = typing.get_type_hints(fn)
    return wrapper  # type: ignore[return-value]


async def aoutcome(pending: Awaitable[State]) -> Any:
    """A task's result (call it with return_state=True), or stop the flow with its message."""
    state = await pending
    if state.is_failed():
        raise StageStopped(state.message or "failed")
    return await state.aresult()
