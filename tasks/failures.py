"""User errors end a task or flow as a Failed state with one clear message and no traceback.

A source that is empty or a template with a typo is not a bug: Prefect should show the sentence
that says what to fix, in the UI and in the CLI, rather than a stack trace.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prefect.states import Failed, State

from augment_it.errors import UserInputError

F = TypeVar("F", bound=Callable[..., Any])


class StageStopped(UserInputError):
    """A task or stage ended Failed; the flow stops with the same message."""


def fails_cleanly(fn: F) -> F:
    """Decorate an async task or flow function (under @task/@flow; every stage's are async, see
    flows/collect.py): user errors become Failed states."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except UserInputError as exc:
            return Failed(message=str(exc))

    return _resolved(run, fn)


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
