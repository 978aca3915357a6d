"""systemd notification (sd_notify) without a dependency: a datagram to $NOTIFY_SOCKET.

READY=1 once the ledger is open and the devices are started; WATCHDOG=1 from the main loop
only, about every half of $WATCHDOG_USEC, so a loop that stops turning stops the pings and
systemd restarts the agent (docs/operations.md, "The units").
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("kiosk.sdnotify")


class Notifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_interval_s = int(usec) / 1e6 / 2 if enabled else None
        self._last_ping = 0.0
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, message: str) -> None:
        if not self._address:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:  # systemd gone or socket wrong: log, never crash the core
            log.warning("sd_notify %r failed: %s", message, exc)

    def ready(self, status: str = "") -> None:
        self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Call from the main loop after a healthy turn; rate-limited to half the interval."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.notify("WATCHDOG=1")
