"""The printer simulator in a process of its own (`python -m drivers.sim.printer`), driven
through its stdin commands, for tests whose own process is busy.

A real printer answers a status request whatever the kiosk's screen is doing. A simulator
thread inside a test process that also draws Kivy frames and runs a desk does not: the
drawing holds the GIL for up to a few hundred milliseconds (measured: 266-362 ms under
Xvfb on a 2-core machine), longer than the 200 ms a VKP80 profile waits for a status reply,
so the core saw a healthy printer as "no answer". In its own process the simulator answers
like a device, and the driver's timeout stays the one of the real profile."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from drivers.sim.printer import Fault

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
ACK_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
RECEIPT, SAVED = "receipt ", " saved "  # the simulator's line: receipt N saved PATH


class PrinterProcess:
    """The subset of PrinterSimulator's control API the UI tests use. Each command returns
    once the simulator has printed its acknowledgement, so it has taken effect."""

    def __init__(self, link: Path, receipts_dir: Path, profile: str) -> None:
        self.link = link
        self.receipts_dir = receipts_dir
        self.profile = profile
        self.events: list[str] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> PrinterProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "drivers.sim.printer", "--link", str(self.link),
             "--receipts", str(self.receipts_dir), "--profile", self.profile],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=REPO, env=env,
        )
        self._reader = threading.Thread(target=self._read, name="printer-process-out",
                                        daemon=True)
        self._reader.start()
        self._wait("ready ", 0, READY_TIMEOUT_S)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.close()
            proc.wait(timeout=STOP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=STOP_TIMEOUT_S)

    # -- control, as PrinterSimulator's ------------------------------------------------

    def set_fault(self, fault: Fault) -> None:
        self._command(fault.value, f"fault {fault.value}")

    def clear(self) -> None:
        self._command("clear", "clear")

    def set_slow(self, ms_per_byte: float) -> None:
        self._command(f"slow {ms_per_byte:g}", f"slow {ms_per_byte:g} ms/byte")

    @property
    def receipts(self) -> list[str]:
        """The receipts the simulator has announced, read from the files it named
        ("receipt N saved PATH": each file is complete by then)."""
        with self._cond:
            saved = [e.split(SAVED, 1)[1] for e in self.events
                     if e.startswith(RECEIPT) and SAVED in e]
        return [Path(path).read_text(encoding="utf-8") for path in saved]

    def wait_for_receipts(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._count(RECEIPT) >= count, timeout)

    # -- internals ---------------------------------------------------------------------

    def _command(self, line: str, ack: str) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise RuntimeError("the printer simulator is not running")
        with self._cond:
            seen = self._count(ack)
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        self._wait(ack, seen, ACK_TIMEOUT_S)

    def _count(self, prefix: str) -> int:
        return sum(1 for e in self.events if e.startswith(prefix))

    def _wait(self, prefix: str, seen: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._count(prefix) > seen, timeout):
                raise RuntimeError(f"the printer simulator did not say {prefix!r} within "
                                   f"{timeout:g} s; it said: {self.events[-10:]}")

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.events.append(line.rstrip("\n"))
                self._cond.notify_all()
