"""User-facing errors: one clear line, a non-zero exit code, never a traceback; and the
signals (SIGINT, SIGTERM) that stop a run, as an `Interrupted` exception."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C; what Slurm sends at the time limit


class CnnvitError(Exception):
    """An error caused by input the user can fix. The CLI prints `message` and exits `code`.

    The message is always one line: text from another library's exception (a pandas parse
    error, a YAML problem) that spans several lines is joined with spaces."""

    def __init__(self, message: str, code: int = 2) -> None:
        message = " ".join(part.strip() for part in message.splitlines() if part.strip())
        super().__init__(message)
        self.message = message
        self.code = code


class ConfigError(CnnvitError):
    """Unknown configuration key, wrong type or invalid value."""


class DataError(CnnvitError):
    """A dataset is missing, corrupt or unsupported."""


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal. A KeyboardInterrupt, so that no `except Exception`
    swallows it; the CLI prints `message` and exits `code` (128 + the signal: 130, 143)."""

    def __init__(self, message: str, code: int = 128 + signal.SIGINT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def signal_name(signum: int) -> str:
    """"SIGTERM" for 15, and so on."""
    return signal.Signals(signum).name


def raise_interrupted(signum: int, frame: FrameType | None) -> None:
    """A signal handler that raises `Interrupted` where the program is."""
    raise Interrupted(f"interrupted by {signal_name(signum)}", 128 + signum)


Handler = Callable[[int, FrameType | None], Any]


@contextmanager
def handling_signals(handler: Handler) -> Iterator[None]:
    """Call `handler` on SIGINT and SIGTERM while the block runs, then restore the handlers
    that were there before. Outside the main thread (where Python cannot install handlers)
    nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():  # None: a handler installed outside Python
            signal.signal(s, signal.SIG_DFL if old is None else old)
