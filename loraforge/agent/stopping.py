"""Stopping a run: Ctrl-C and SIGTERM while the loop runs. The first stops at the next safe point with the
state saved; the second stops at once, children included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from loraforge.ui import UI


class StopControl:
    """The run's stop flag, the phase that a stop must interrupt, and the signal handlers that set it."""

    def __init__(self, ui: UI) -> None:
        self.ui = ui
        self.event = threading.Event()  # set once a stop is asked for; a training thread polls it
        self._phase: asyncio.Future | None = None
        self._phase_async = False
        self._interrupts = 0

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()

    @contextlib.contextmanager
    def running(self, phase: asyncio.Future, is_async: bool) -> Iterator[None]:
        """While `phase` runs, a stop request cancels it if it is async (generated rows are already on disk);
        a blocking phase in a thread sees the flag at its next step instead."""
        self._phase, self._phase_async = phase, is_async
        try:
            yield
        finally:
            self._phase = None

    def request(self) -> None:
        """What Ctrl-C does."""
        self._interrupts += 1
        if self._interrupts >= 2:
            self.ui.warn("Stopping now.")
            kill_children()
            os._exit(130)
        self.ui.warn("Stopping after saving state (press Ctrl-C again to stop at once)...")
        self.event.set()
        if self._phase is not None and self._phase_async:
            self._phase.cancel()

    @contextlib.contextmanager
    def signal_handlers(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM go to `request` while the loop runs (main thread only)."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        installed = threading.current_thread() is threading.main_thread()
        if installed:
            try:
                for sig in signals:
                    loop.add_signal_handler(sig, self.request)
            except NotImplementedError:  # no loop signal handlers on this platform: Ctrl-C interrupts as usual
                installed = False
        try:
            yield
        finally:
            if installed:
                for sig in signals:
                    loop.remove_signal_handler(sig)


def kill_children() -> None:
    """Child processes (an out-of-process llama-server) go down with us."""
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            child.kill()
    except Exception:  # noqa: BLE001 - best effort on the way out
        pass
