"""User-facing errors: one clear line, a non-zero exit code, never a traceback."""

from __future__ import annotations


class CnnvitError(Exception):
    """An error caused by input the user can fix. The CLI prints `message` and exits `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ConfigError(CnnvitError):
    """Unknown configuration key, wrong type or invalid value."""


class DataError(CnnvitError):
    """A dataset is missing, corrupt or unsupported."""
