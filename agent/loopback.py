"""Free loopback ports for the servers the demo, the tests and the benchmarks start.

A port from bind(0) comes from the kernel's ephemeral range, the range outgoing
connections take their source ports from. Between choosing it and the server binding it,
any connect() on the machine may take it as its source port (a NATS node's route to its
peer did: the next node failed with "address already in use"). So ports are chosen below
that range, where no connect() takes one, and one process never hands out a port twice.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32768, 60999)  # Linux's default, when the file cannot be read
LOWEST = 20000  # above the well-known and most registered service ports
MIN_ROOM = 1000  # fewer ports than this below the ephemeral range: fall back to bind(0)
TRIES = 200

_given: set[int] = set()
_lock = threading.Lock()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    try:
        lo, hi = (int(v) for v in path.read_text(encoding="ascii").split())
    except (OSError, ValueError):
        return DEFAULT_EPHEMERAL
    return lo, hi


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port(host: str = "127.0.0.1", path: Path = EPHEMERAL_RANGE_FILE) -> int:
    """A port nothing listens on, below the ephemeral range, not given out before."""
    top = ephemeral_range(path)[0] - 1
    if top - LOWEST < MIN_ROOM:
        port = _kernel_port(host)  # a machine whose ephemeral range starts low
        with _lock:
            _given.add(port)
        return port
    for _ in range(TRIES):
        port = random.randint(LOWEST, top)
        with _lock:
            if port in _given:
                continue
        if _bindable(host, port):
            with _lock:
                if port not in _given:
                    _given.add(port)
                    return port
    raise OSError(f"no free port on {host} between {LOWEST} and {top} after {TRIES} tries")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
