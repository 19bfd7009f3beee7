"""Exceptions that carry everything a one-line error message needs."""

from __future__ import annotations


class AttnxError(Exception):
    """Base class: ``str(exc)`` is a complete one-line message for the user."""


class InputError(AttnxError):
    """Bad input data: names the file and, where known, the 1-based line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple:  # a worker's error reaches the coordinator of a distributed run intact
        return (type(self), (self.path, self.line, self.problem))


class ModelError(AttnxError):
    """The model cannot be found or loaded."""


class StoreError(AttnxError):
    """The store is missing, corrupt, incompatible with the request, or cannot be written."""


class AttnxWarning(UserWarning):
    """Something the user should know about a result that is still produced (``warnings.warn``); ``str()`` of
    it is one line. The CLI prints it as ``warning: ...`` on stderr."""
