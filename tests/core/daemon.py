"""Run the real core daemon (`python -m kiosk run`) as a subprocess for tests."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.config_files import write_config

READY_TIMEOUT_S = 30.0

__all__ = ["Core", "write_config"]  # write_config lives in tests/config_files.py


@dataclass
class Core:
    config: Path
    workdir: Path
    proc: subprocess.Popen | None = None
    log: list[str] = field(default_factory=list)
    # start/kill/stop may come from different threads (the crash test's killer)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def socket(self) -> Path:
        return self.workdir / "run" / "kiosk.sock"

    @property
    def inbox(self) -> Path:
        return self.workdir / "data" / "virtual-acceptor.inbox"

    @property
    def journal(self) -> Path:
        return self.workdir / "data" / "virtual-acceptor.journal"

    @property
    def ledger(self) -> Path:
        return self.workdir / "data" / "ledger.sqlite"

    def start(self) -> None:
        with self.lock:
            self._start()

    def _start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("the core is already running: stop it before starting another")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "run", "--config", str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                if b"READY" in buf:
                    self.log.append(buf.decode(errors="replace"))
                    os.set_blocking(self.proc.stdout.fileno(), False)
                    return
        self._kill()
        raise RuntimeError("core did not become ready:\n" + buf.decode(errors="replace"))

    def drain_output(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            try:
                data = os.read(self.proc.stdout.fileno(), 1 << 20)
                if data:
                    self.log.append(data.decode(errors="replace"))
            except (BlockingIOError, OSError):
                pass

    def kill(self) -> None:
        with self.lock:
            self._kill()

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.drain_output()

    def stop(self) -> int:
        with self.lock:
            return self._stop()

    def _stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._kill()
        self.drain_output()
        return self.proc.returncode
