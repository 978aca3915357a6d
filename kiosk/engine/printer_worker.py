"""The printer thread: every print job and status query of the engine runs here.

One worker thread, so jobs keep their order and the engine lock is never held across
printer I/O. It is passed into the engine (an injectable seam): tests keep a reference and
`drain()` it to wait until every job queued so far has run, instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

DRAIN_TIMEOUT_S = 10.0


class PrinterWorker:
    """One thread for printer work, jobs run in the order they were submitted."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="printer")

    def submit(self, job: Callable[..., T], *args: Any) -> Future[T]:
        return self._pool.submit(job, *args)

    def drain(self, timeout_s: float | None = DRAIN_TIMEOUT_S) -> None:
        """Wait until every job submitted before this call has finished."""
        self._pool.submit(lambda: None).result(timeout=timeout_s)

    def shutdown(self) -> None:
        """Run what is queued, then stop the thread (the engine's stop())."""
        self._pool.shutdown(wait=True)
