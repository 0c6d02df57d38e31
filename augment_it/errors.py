"""Errors in what the user gave us: reported as one clear sentence, never as a traceback."""


class UserInputError(Exception):
    """A source, template or setting that cannot be used; the message names what and where."""


class InputNotice(UserWarning):
    """Something the user gave was used, but not quite as written (a column dropped, a check that
    could not be made): warned with this category, it lands in the run's log."""
