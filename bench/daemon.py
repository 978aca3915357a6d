"""Start processes the way systemd would and time them to their READY line.

The core daemon (`python -m kiosk run --config FILE`) prints `READY socket=PATH` once its
socket accepts clients; the startup floors print a bare `READY`. Both go through the same
spawn-and-read code so their times are comparable.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import PYTHON, REPO, BenchError
from tests.config_files import write_config  # the same config files the tests use

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    spawned_at: float  # perf_counter() just before the spawn
    ready_s: float  # from the spawn to the READY line read by us
    ready_line: str
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no stderr)"


def spawn_until_ready(argv: list[str], stderr_path: Path,
                      timeout: float = READY_TIMEOUT_S) -> Spawned:
    """Spawn `argv` and block until it prints a line starting with READY."""
    with open(stderr_path, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, cwd=REPO)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = t0 + timeout
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            stop(proc)
            raise BenchError(f"{' '.join(argv)}: no READY within {timeout:.0f} s\n"
                             f"{_tail(stderr_path)}")
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            code = proc.wait()
            raise BenchError(f"{' '.join(argv)}: exited with {code} before READY\n"
                             f"{_tail(stderr_path)}")
        buf += chunk
        for line in buf.split(b"\n")[:-1]:
            if line.startswith(b"READY"):
                return Spawned(proc, t0, time.perf_counter() - t0, line.decode(), stderr_path)


def stop(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> int | None:
    """SIGTERM our own child and wait; SIGKILL it only if it will not go."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) from /proc/PID/status, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def kiosk_argv(config: Path) -> list[str]:
    return [PYTHON, "-m", "kiosk", "run", "--config", str(config)]


def socket_of(spawned: Spawned) -> Path:
    _, _, path = spawned.ready_line.partition("socket=")
    if not path:
        raise BenchError(f"READY line without a socket: {spawned.ready_line!r}")
    return Path(path.strip())


@contextmanager
def kiosk_daemon(folder: Path) -> Iterator[Spawned]:
    """The real core daemon on a config in `folder`, stopped with SIGTERM afterwards."""
    spawned = spawn_until_ready(kiosk_argv(write_config(folder)), folder / "daemon.stderr")
    try:
        yield spawned
    except BaseException:
        stop(spawned.proc)
        raise
    code = stop(spawned.proc)
    if code != 0:
        raise BenchError(f"the daemon exited with {code} on SIGTERM\n"
                         f"{_tail(spawned.stderr_path)}")
