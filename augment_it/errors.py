"""Errors in what the user gave us: reported as one clear sentence, never as a traceback."""

from collections.abc import Sequence


class UserInputError(Exception):
    """A source, template or setting that cannot be used; the message names what and where."""


class InputNotice(UserWarning):
    """Something the user gave was used, but not quite as written (a column dropped, a check that
    could not be made): warned with this category, it lands in the run's log."""


def yaml_error_text(exc: Exception) -> str:
    """A YAML parser's error in one line, what is wrong and where: PyYAML's own text spans several
    lines and draws the line under a caret, which broke the one-line reasons runs print."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if not problem:
        return " ".join(str(exc).split())
    text = f"{problem}{_at(mark)}"
    if context := getattr(exc, "context", None):
        text += f" ({context}{_at(getattr(exc, 'context_mark', None))})"
    return text


def _at(mark: object) -> str:
    line, column = getattr(mark, "line", None), getattr(mark, "column", None)
    return f" at line {line + 1}, column {column + 1}" if line is not None and column is not None else ""


def first_few(items: Sequence[object], limit: int = 5) -> str:
    """`rec1, rec2, rec3 and 4 more`: where a notice found something, without a wall of ids."""
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(map(str, items[:limit])) + more
