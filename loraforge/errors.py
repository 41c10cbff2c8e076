"""Errors that reach the user as one paragraph instead of a traceback."""

from __future__ import annotations


class LoraforgeError(Exception):
    """A problem the user can fix: the message says what is wrong, where, and how to fix it."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix

    def paragraph(self) -> str:
        text = str(self)
        return f"{text} {self.fix}" if self.fix else text


class ConfigError(LoraforgeError):
    """A bad value in a config file, a flag or a data file."""


class ServerError(LoraforgeError):
    """The llama.cpp server could not be started, or stopped answering."""


class StopRequested(Exception):
    """Raised inside a run when the user asked it to stop (Ctrl-C); state is already saved."""


class PhaseTimeout(LoraforgeError):
    """A phase ran past its time limit; the run stopped with its state saved."""


class DiskFull(LoraforgeError):
    """The disk filled up; the run stopped cleanly with its state saved."""
