"""A real mosquitto for the sync tests: a free loopback port, started and stopped by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.demo_desk import free_port, mosquitto_path, port_open

READY_TIMEOUT_S = 10.0

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
        log = open(log_path, "wb")  # noqa: SIM115 - the broker keeps it
        self.proc = subprocess.Popen(
            [exe, "-c", str(self.conf), "-v"], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited:\n{self.log()}")
            if port_open(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port}:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in self.log_files[-2:])
