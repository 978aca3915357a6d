"""Serial transport: real ports and pseudo-terminals through one pyserial code path."""

from __future__ import annotations

import dataclasses
import os
import termios
import tty
from dataclasses import dataclass
from pathlib import Path

import serial

from drivers.profiles import SerialSettings

NO_PARITY = "N"
_PTY_SLAVE_MAJORS = range(136, 144)
"""Linux device majors of Unix98 pty slaves (/dev/pts/N)."""


def open_port(url: str, settings: SerialSettings, timeout_s: float = 0.05) -> serial.SerialBase:
    """Open a port (`/dev/ttyUSB0`, a pty path, or any pyserial URL such as `loop://`).

    Modem-control lines are not touched: they fail on a pty and no protocol here needs them.

    A pseudo-terminal has no parity bit: Linux drops PARENB, and (seen on 6.x kernels)
    refuses with EINVAL a tcsetattr whose only change is PARENB, so the second open of the
    same pty at 8E1 (ID-003) fails inside pyserial with termios.error. On a pty the parity
    setting means nothing, so such a port is opened as 8N1. Every failure is an OSError.
    """
    try:
        return _open(url, settings, timeout_s)
    except termios.error as exc:
        if settings.parity != NO_PARITY and is_pty(url):
            try:
                return _open(url, dataclasses.replace(settings, parity=NO_PARITY), timeout_s)
            except termios.error as again:
                raise OSError(f"cannot open serial port {url}: {again}") from again
        raise OSError(f"cannot open serial port {url}: {exc}") from exc


def is_pty(url: str) -> bool:
    """Whether `url` names the slave side of a Unix98 pseudo-terminal."""
    try:
        rdev = os.stat(url).st_rdev
    except (OSError, ValueError):
        return False
    return os.major(rdev) in _PTY_SLAVE_MAJORS


def _open(url: str, settings: SerialSettings, timeout_s: float) -> serial.SerialBase:
    try:
        port = serial.serial_for_url(
            url,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            timeout=timeout_s,
            write_timeout=1.0,
            do_not_open=True,
        )
        port.open()
    except (serial.SerialException, OSError, ValueError) as exc:
        raise OSError(f"cannot open serial port {url}: {exc}") from exc
    return port


@dataclass
class PseudoTerminal:
    """The device side of a pty pair, for simulators. `path` is what a driver opens."""

    master_fd: int
    path: str
    link: Path | None = None

    def close(self) -> None:
        if self.link is not None:
            try:
                if self.link.is_symlink():
                    self.link.unlink()
            except OSError:
                pass
        try:
            os.close(self.master_fd)
        except OSError:
            pass


def open_pty(link: Path | None = None) -> PseudoTerminal:
    """A raw pty pair; `link` (if given) becomes a symlink to the slave side."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)
    # Keep the slave open in this process so the master never sees EOF/EIO between
    # driver reconnects (a real device does not vanish when the host closes the port).
    os.set_inheritable(slave, False)
    if link is not None:
        if link.is_symlink() or link.exists():
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return PseudoTerminal(master_fd=master, path=path, link=link)
