"""How a simulator's command line stops: SIGTERM or Ctrl-C, whether stdin is open or not.

Shared by every simulator CLI (drivers/sim/pty_device.py `run_cli`, drivers/sim/printer.py).
The handler raises instead of setting a flag: a handler that returns lets a blocking
stdin read resume (PEP 475), so SIGTERM would be ignored while stdin stays open. With
stdin closed the CLI waits in `wait_for_stop`, which sleeps in short steps: a plain
sleep, because the handler's exception must never land inside threading's lock
bookkeeping (raised inside `Event.wait` it left the condition's lock released twice:
"RuntimeError: release unlocked lock", exit 1 instead of 0).
"""

from __future__ import annotations

import faulthandler
import io
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

WAKE_S = 0.5  # how often the background wait looks at `done`


class Terminated(Exception):
    """SIGTERM: unwind out of a blocking stdin read (or the wait after it) and stop."""


def _raise_terminated(_signum: int, _frame: object) -> None:
    raise Terminated


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises Terminated inside the block (main thread only: elsewhere, as in a
    test calling the CLI function, nothing changes), and `kill -USR1` dumps every
    thread's stack to stderr (a simulator that will not stop says where it hangs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    except (io.UnsupportedOperation, ValueError):  # stderr is not a file (captured)
        pass
    previous: Callable[..., Any] | int | None = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_for_stop(done: threading.Event) -> None:
    """Run in the background (stdin closed) until `done`, SIGTERM or Ctrl-C. Polls with
    time.sleep, never Event.wait: SIGTERM raises wherever the main thread is, and a sleep
    holds no lock for the exception to leave in a wrong state."""
    while not done.is_set():
        time.sleep(WAKE_S)
