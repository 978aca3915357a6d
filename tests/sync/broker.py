"""A real mosquitto for the sync tests: a free loopback port, started and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.demo_desk import mosquitto_path
from agent.loopback import free_port, port_open

READY_TIMEOUT_S = 10.0


def spawn_listening(argv: list[str], log_path: Path, port: int, what: str,
                    log_text: Callable[[], str], ready_s: float = READY_TIMEOUT_S,
                    append: bool = False) -> subprocess.Popen[bytes]:
    """Start a server with its output in `log_path` and return once it accepts on
    `port`; an exit or a timeout raises with its log (the broker fixtures' one way)."""
    log = open(log_path, "ab" if append else "wb")  # noqa: SIM115 - the server keeps it
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log_text()}")
        if port_open(port):
            return proc
        time.sleep(0.02)
    stop_process(proc)
    raise RuntimeError(f"{what} did not listen on {port}:\n{log_text()}")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM,
                 wait_s: float = 10.0) -> None:
    """Signal a server and wait for it; SIGKILL when it does not go within `wait_s`."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

__all__ = ["Broker", "free_port", "mosquitto_path", "port_open"]


@dataclass
class Broker:
    workdir: Path
    port: int = 0
    extra: str = ""  # more mosquitto.conf lines (TLS listener, ACL, ...)
    listener: str = ""  # replaces the default anonymous listener when set
    proc: subprocess.Popen | None = None
    starts: int = 0
    log_files: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def conf(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_conf(self) -> None:
        listener = self.listener or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        # As root, mosquitto drops to the "mosquitto" user, which cannot read the test's
        # private temporary files (certificates, ACL): stay as we are.
        user = "user root\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}{listener}\npersistence false\nmax_queued_messages 10000\n{self.extra}\n",
            encoding="utf-8",
        )

    def start(self) -> Broker:
        exe = mosquitto_path()
        if exe is None:
            pytest.fail("mosquitto is not installed: run scripts/system-deps.sh")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_conf()
        self.starts += 1
        log_path = self.workdir / f"mosquitto-{self.starts}.log"
        self.log_files.append(log_path)
        self.proc = spawn_listening([exe, "-c", str(self.conf), "-v"], log_path, self.port,
                                    "mosquitto", self.log)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_process(self.proc, sig)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.log_files[-2:])
