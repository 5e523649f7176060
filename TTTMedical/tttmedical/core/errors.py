"""User-facing errors.

`InputError` carries one sentence that names the bad input and the fix; the command line prints
it without a traceback and exits with status 2.  Anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
    """Bad input supplied by the user (file, array, option)."""


class CancelledError(RuntimeError):
    """The run was cancelled; nothing was written."""
