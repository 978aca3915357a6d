"""One virtual X display for everything that needs a screen: UI tests, the chaos rig's
customer-screen process and the UI benchmark.

The server picks a free display number itself (`-displayfd`), so parallel runs never
collide, and it is our own process, stopped when we are done. Without Xvfb installed this
raises a clear error (callers turn it into a failure, never a skip)."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from pathlib import Path

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class XvfbError(RuntimeError):
    """Xvfb is missing or did not start; the message says which and what it printed."""


class Xvfb:
    """`with Xvfb(log, (w, h)) as x:` then `x.display` is ":N"."""

    def __init__(self, log: Path, size: tuple[int, int]) -> None:
        self.log = log
        self.size = size
        self.proc: subprocess.Popen[bytes] | None = None
        self.display = ""

    def start(self) -> Xvfb:
        exe = shutil.which("Xvfb") or "/usr/bin/Xvfb"
        if not os.access(exe, os.X_OK):
            raise XvfbError("Xvfb is not installed: run `make setup` (scripts/system-deps.sh "
                            "installs the xvfb package)")
        r, w = os.pipe()
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [exe, "-displayfd", str(w), "-screen", "0", f"{self.size[0]}x{self.size[1]}x24",
                 "-nolisten", "tcp", "-noreset"],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        os.close(w)
        number = b""
        try:
            while not number.endswith(b"\n"):
                ready, _, _ = select.select([r], [], [], START_TIMEOUT_S)
                chunk = os.read(r, 16) if ready else b""
                if not chunk:
                    self.stop()
                    raise XvfbError(f"Xvfb did not start: {self.log.read_text(errors='replace')}")
                number += chunk
        finally:
            os.close(r)
        self.display = f":{int(number)}"
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def __enter__(self) -> Xvfb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
