"""The package's error base: anything raised as ``ValProbingError`` is a message for the user.

The CLI prints such errors without a traceback and exits with code 2. Raise them with the file,
line and field (or task, prompt and limit) that a user needs to fix the input.
"""


class ValProbingError(Exception):
    """A problem with the user's input or environment, explained in the message."""
