"""Serial transport: real ports and pseudo-terminals through one pyserial code path."""

from __future__ import annotations

import os
import tty
from dataclasses import dataclass
from pathlib import Path

import serial

from drivers.profiles import SerialSettings


def open_port(url: str, settings: SerialSettings, timeout_s: float = 0.05) -> serial.SerialBase:
    """Open a port (`/dev/ttyUSB0`, a pty path, or any pyserial URL such as `loop://`).

    Modem-control lines are not touched: they fail on a pty and no protocol here needs them.
    """
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
