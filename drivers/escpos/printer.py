"""EscposPrinter: the ReceiptPrinter for real ESC/POS printers on a serial port.

One owner per port and one outstanding request on the line (docs/architecture.md): a lock covers
every exchange. Status is asked before every job because printers buffer data while out
of paper and print it later as a burst of stale receipts (docs/protocols/escpos.md,
"Stale jobs"); a
printer that does not answer within the profile's timeout is OFFLINE, never "probably ok".
"""

from __future__ import annotations

import logging
import termios
import threading
import time
from pathlib import Path

import serial

from drivers.escpos import commands as cmd
from drivers.escpos.encoder import EscposEncoder
from drivers.escpos.settings import PrinterSettings
from drivers.escpos.status import (
    FULL_STATUS_LENGTH,
    REALTIME_ORDER,
    StatusError,
    StatusReport,
    decode_full,
    decode_realtime,
)
from drivers.framelog import FrameLog
from drivers.printer import Document, PrinterError, PrinterStatus
from drivers.profiles import Profile
from drivers.transport import open_port

log = logging.getLogger("kiosk.printer")

MS = 1000.0
READ_SLICE_S = 0.02  # longest single blocking read; bounds how late a timeout is noticed
WRITE_CHUNK = 256  # bytes per write() so write_timeout applies per chunk, not per receipt
BUSY_POLL_S = 0.005  # between "still printing?" polls: 20 ms ate the 1.2x line-time margin
REALTIME_REPLY_LENGTH = 1
# A status query that gets no reply, or a reply that is not a status, is asked once more
# before the printer counts as OFFLINE: one reply lost to line noise or a late USB-serial
# transfer must not fail a receipt or raise a false alarm at the desk
# (docs/protocols/escpos.md, "Status").
STATUS_ATTEMPTS = 2


class EscposPrinter:
    """A receipt printer speaking ESC/POS over `url`, configured by a firmware profile."""

    def __init__(
        self,
        profile: Profile,
        url: str,
        *,
        frame_log_path: Path | None = None,
        settings: PrinterSettings | None = None,
    ) -> None:
        """`settings` overrides what the profile says (tests, technician experiments)."""
        self.profile = profile
        self.url = url
        self.settings = settings or PrinterSettings.from_profile(profile)
        self._encoder = EscposEncoder(self.settings)
        self._frames = FrameLog(f"printer.{profile.name}", frame_log_path)
        self._frame_log_path = frame_log_path
        self._port: serial.SerialBase | None = None
        self._open_error: str | None = None
        self._lock = threading.RLock()
        self._last = StatusReport(PrinterStatus.OFFLINE, ("not started",))

    # --- ReceiptPrinter ---------------------------------------------------------------

    @property
    def columns(self) -> int:
        return self.settings.columns

    @property
    def last_report(self) -> StatusReport:
        """The most recent status, without asking the device (for health snapshots)."""
        return self._last

    def start(self) -> None:
        """Open the port. A port that cannot be opened is not fatal: status says OFFLINE
        with the reason and every later call tries again (USB adapters come and go)."""
        with self._lock:
            self._try_open()

    def stop(self) -> None:
        with self._lock:
            self._close()
            self._frames.close()

    def status(self) -> PrinterStatus:
        return self.status_report().status

    def status_report(self) -> StatusReport:
        """Ask the device now; bounded by the profile's status timeout per request."""
        with self._lock:
            port = self._try_open()
            if port is None:
                report = StatusReport(PrinterStatus.OFFLINE, (f"port: {self._open_error}",))
            else:
                report = self._query_status(port)
            self._last = report
            return report

    def print_document(self, document: Document) -> None:
        """Check, send, confirm. Raises PrinterError with a reason a technician can act on."""
        with self._lock:
            before = self.status_report()
            if not before.can_print:
                raise PrinterError(f"printer {self.profile.name} cannot print: {before.describe()}")
            port = self._require_port()
            self._send(port, self._encoder.encode_document(document))
            after = self._wait_until_printed(port)
            if not after.can_print:
                self._abort_job(port)
                raise PrinterError(
                    f"printer {self.profile.name} stopped while printing {document.kind}: "
                    f"{after.describe()}; the receipt may be incomplete"
                )

    # --- extras -----------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (presenter commands, diagnostics)."""
        with self._lock:
            self._send(self._require_port(), data)

    # --- internals --------------------------------------------------------------------

    def _try_open(self) -> serial.SerialBase | None:
        if self._port is not None:
            return self._port
        timeout_s = min(READ_SLICE_S, self.settings.status_timeout_ms / MS)
        try:
            self._port = open_port(self.url, self.profile.serial, timeout_s=timeout_s)
        except OSError as exc:
            self._open_error = str(exc)
            return None
        self._open_error = None
        return self._port

    def _require_port(self) -> serial.SerialBase:
        port = self._try_open()
        if port is None:
            raise PrinterError(f"printer {self.profile.name}: {self._open_error}")
        return port

    def _close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            except (OSError, serial.SerialException):
                pass
            self._port = None

    def _send(self, port: serial.SerialBase, data: bytes) -> None:
        try:
            for start in range(0, len(data), WRITE_CHUNK):
                chunk = data[start : start + WRITE_CHUNK]
                self._frames.tx(chunk)
                port.write(chunk)
            port.flush()
        except serial.SerialTimeoutException as exc:
            raise PrinterError(
                f"printer {self.profile.name} is not accepting data (write timed out)"
            ) from exc
        except (OSError, serial.SerialException, termios.error) as exc:
            self._close()
            raise PrinterError(f"printer {self.profile.name}: write failed: {exc}") from exc

    def _exchange(self, port: serial.SerialBase, request: cmd.StatusRequest, length: int) -> bytes:
        """One status request and its reply; fewer bytes than `length` means timeout."""
        frame = cmd.status_request(request)
        port.reset_input_buffer()  # drop late replies to an earlier, timed-out request
        self._frames.tx(frame)
        port.write(frame)
        deadline = time.monotonic() + self.settings.status_timeout_ms / MS
        reply = b""
        while len(reply) < length and time.monotonic() < deadline:
            reply += port.read(length - len(reply))
        self._frames.rx(reply, "" if len(reply) == length else "timeout")
        return reply

    def _query_status(self, port: serial.SerialBase) -> StatusReport:
        report, unanswered = self._query_status_once(port)
        for _ in range(STATUS_ATTEMPTS - 1):
            if not unanswered:
                break  # an answer, or a port error (the port is reopened on the next call)
            log.info("printer %s: %s; asking again", self.profile.name, report.describe())
            report, unanswered = self._query_status_once(port)
        return report

    def _query_status_once(self, port: serial.SerialBase) -> tuple[StatusReport, bool]:
        """One status query; the flag says the printer did not answer it (silence or a
        reply that is not a status), which is worth one more question."""
        timeout_ms = self.settings.status_timeout_ms
        try:
            if self.settings.full_status:
                reply = self._exchange(port, cmd.StatusRequest.CUSTOM_FULL, FULL_STATUS_LENGTH)
                if not reply:
                    return _offline(f"no reply to full status within {timeout_ms} ms"), True
                return decode_full(reply), False
            replies = b""
            for request in REALTIME_ORDER:
                reply = self._exchange(port, request, REALTIME_REPLY_LENGTH)
                if not reply:
                    reason = f"no reply to DLE EOT {int(request)} within {timeout_ms} ms"
                    return _offline(reason), True
                replies += reply
            return decode_realtime(replies), False
        except StatusError as exc:
            return _offline(f"bad status reply: {exc}"), True
        except (OSError, serial.SerialException, termios.error) as exc:
            # termios.error: the port vanished under us (USB unplug); reopen next time
            self._close()
            return _offline(f"port error: {exc}"), False

    def _wait_until_printed(self, port: serial.SerialBase) -> StatusReport:
        """After sending: with full status, wait (bounded) until the motor stops, so a
        paper-out in the middle of the receipt is seen; otherwise one status check."""
        deadline = time.monotonic() + self.settings.print_timeout_ms / MS
        while True:
            report = self._query_status(port)
            self._last = report
            if not (self.settings.full_status and report.printing and report.can_print):
                return report
            if time.monotonic() >= deadline:
                log.warning(
                    "printer %s still printing after %d ms",
                    self.profile.name,
                    self.settings.print_timeout_ms,
                )
                return report
            time.sleep(BUSY_POLL_S)

    def _abort_job(self, port: serial.SerialBase) -> None:
        """Drop what the printer still holds, so it does not come out later as a stale
        receipt once paper is loaded (only where the profile says DLE ENQ 2 works)."""
        if not self.settings.realtime_clear:
            return
        try:
            frame = cmd.realtime_recover(cmd.Recovery.CLEAR)
            self._frames.tx(frame)
            port.write(frame)
        except (OSError, serial.SerialException) as exc:
            log.warning("printer %s: could not clear buffer: %s", self.profile.name, exc)


def _offline(reason: str) -> StatusReport:
    return StatusReport(PrinterStatus.OFFLINE, (reason,))
