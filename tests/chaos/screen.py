"""The customer screen as its own process: Xvfb and `python -m ui --report`.

The UI prints one `SHOWN {json}` line per frame that changed, with the screen name and
the texts of its visible labels (ui/app.py, `--report`): what a customer reads. The disk
run uses it to check that the out-of-service screen really shows the support phone.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.chaos.rig import REPO

WIDTH, HEIGHT = 1280, 1024


class Xvfb:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.display = ""

    def start(self) -> Xvfb:
        exe = shutil.which("Xvfb") or "/usr/bin/Xvfb"
        if not os.access(exe, os.X_OK):
            raise RuntimeError("Xvfb is not installed: run `make setup`")
        r, w = os.pipe()
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [exe, "-displayfd", str(w), "-screen", "0", f"{WIDTH}x{HEIGHT}x24",
                 "-nolisten", "tcp", "-noreset"],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        os.close(w)
        number = b""
        try:
            while not number.endswith(b"\n"):
                ready, _, _ = select.select([r], [], [], 15)
                chunk = os.read(r, 16) if ready else b""
                if not chunk:
                    self.stop()
                    raise RuntimeError(f"Xvfb did not start: {self.log.read_text()}")
                number += chunk
        finally:
            os.close(r)
        self.display = f":{int(number)}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


class UiProcess:
    """`python -m ui --socket S --report` on the given display."""

    def __init__(self, socket: Path, display: str, home: Path, phone: str) -> None:
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(home),
               "KIVY_NO_CONSOLELOG": "1", "KIVY_NO_ARGS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ui", "--socket", str(socket), "--phone", phone, "--report",
             "--size", f"{WIDTH}x{HEIGHT}", "--dpi", "96"],
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
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def plain(text: str) -> str:
    """Label text with non-breaking spaces made plain (phones are laid out with NBSP)."""
    return text.replace("\u00a0", " ").replace("\u202f", " ")
