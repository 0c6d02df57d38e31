"""Errors in what the user gave us: reported as one clear sentence, never as a traceback."""


class UserInputError(Exception):
    """A source, template or setting that cannot be used; the message names what and where."""
