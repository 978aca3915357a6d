"""The customer screen as its own process: Xvfb and `python -m ui --report`.

The UI prints one `SHOWN {json}` line per frame that changed, with the screen name and
the texts of its visible labels (ui/app.py, `--report`): what a customer reads. The disk
run uses it to check that the out-of-service screen really shows the support phone.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.chaos.rig import REPO
from tests.xvfb import Xvfb

WIDTH, HEIGHT = 1280, 1024


def xvfb(log: Path) -> Xvfb:
    """The screen of the chaos rig's UI process (not started yet)."""
    return Xvfb(log, (WIDTH, HEIGHT))


class UiProcess:
    """The customer screen as its own process with `--report` on the given display.

    `where` says how it is started: ["-m", "ui", "--socket", S, ...] (the UI alone) or
    ["-m", "kiosk", "ui", "-c", CONFIG] (through the CLI)."""

    def __init__(self, where: list[str], display: str, home: Path) -> None:
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(home),
               "KIVY_NO_CONSOLELOG": "1", "KIVY_NO_ARGS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, *where, "--report", "--size", f"{WIDTH}x{HEIGHT}", "--dpi", "96"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.buf = b""
        self.lines: list[str] = []
        self.shown: list[dict[str, Any]] = []

    def wait_for(self, pred: Any, timeout: float = 20.0) -> dict[str, Any]:
        """The first SHOWN report from now on that satisfies `pred`."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.lines.append(text)
                if text.startswith("SHOWN "):
                    shown = json.loads(text[6:])
                    self.shown.append(shown)
                    if pred(shown):
                        return shown
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.buf += chunk
        raise TimeoutError("the customer screen never showed it; last lines:\n"
                           + "\n".join(self.lines[-5:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._close()

    def kill(self) -> None:
        """A crash of the screen process: SIGKILL, no goodbye."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def plain(text: str) -> str:
    """Label text with non-breaking spaces made plain (phones are laid out with NBSP)."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")
