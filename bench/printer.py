"""Receipt printer: the bytes of each 42-column document, the time to print it through
the real driver at 9600 and 115200 baud beside its line time, and the status answer.

The real EscposPrinter with the custom_vkp80iii firmware profile (42 columns, Custom full
status: the driver polls DLE EOT 20 until the printer stops, as in service) prints over a
pseudo-terminal to the PrinterSimulator in the same process. The four documents are
built by kiosk.receipts from fixed data (payment receipt, unclaimed-credit slip,
encashment report, test page) and encoded by the real EscposEncoder.

A pty has no baud rate, so the simulator's `slow` mode plays the line: it takes the
received print data at 10 bits a byte (8N1) divided by the baud rate, on an absolute
schedule (drivers/sim/printer.py: byte k of a run is done at start + (k + 1) x byte time;
a late wake-up is caught up, never added). The cut, near the end of a job, is therefore
interpreted no sooner than its bytes' line time after the data arrived. Status exchanges
are answered at once on the pty; the line time of two of them (the check before the job
and the one that finds the printer idle) is added to each judged figure, as a real line
would serialize them. Each figure is the time from print_document() being called to the later
of its return and the simulator's cut; its limit is the job's line time, computed in the
same run from the encoder's bytes. Target (docs/performance-targets.md): a 42-column
receipt at 115200 baud within 1.2 x its line time. The same bytes written raw to the pty
(no driver) show what the emulation itself costs.

The judged figure is an upper bound: on a pty port.flush() returns at once, so the
driver's "still printing?" polls (every BUSY_POLL_S) start while the data is still being
played and it sees the end of a job up to one poll late. As a cross-check (INFO), every
document is also printed through `_PlayedLine`, which gives the driver's port the host's
half of a line: flush() returns after the line time of what was written (tcdrain on a
UART), a status request crosses the line before the printer sees it, a reply after it.

Status answer: EscposPrinter.status_report() on an idle printer, one DLE EOT 20 exchange
(custom_vkp80iii) or four DLE EOT 1-4 exchanges (epson_tmt88), plus the line time of the
bytes exchanged at the profile's own baud rate; beside it, a raw DLE EOT 4 exchange on
the pty without the driver. Target (docs/performance-targets.md): a status answer within
50 ms.
"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    BenchResult,
    Context,
    Figure,
    fmt_ms,
    fmt_us,
    median,
    percentile,
    scratch_dir,
    verdict,
)
from drivers.escpos import commands as cmd
from drivers.escpos.encoder import EscposEncoder
from drivers.escpos.factory import printer_profile
from drivers.escpos.printer import BUSY_POLL_S, EscposPrinter
from drivers.escpos.settings import PrinterSettings
from drivers.escpos.status import FULL_STATUS_LENGTH, REALTIME_ORDER
from drivers.printer import Document, PrinterStatus
from drivers.profiles import Profile
from drivers.sim.printer import BITS_PER_BYTE_8N1, PrinterSimulator, SimConfig, ms_per_byte
from kiosk import receipts

KEY = "printer"
TITLE = "Receipt printer: 42-column documents at 9600 / 115200 baud, status answer (ESC/POS)"
PRINT_PROFILE = "custom_vkp80iii"
CONTRAST_PROFILE = "epson_tmt88"  # 42 columns too, DLE EOT 1-4: the driver does not wait
STATUS_PROFILES = ("custom_vkp80iii", "epson_tmt88")
BAUDS = (9600, 115200)
COLUMNS = 42
JUDGED_BAUD = 115200  # performance-targets.md: a 42-column receipt at 115200
WORST_BAUD = 9600
PRINT_TARGET_RATIO = 1.2
STATUS_TARGET_S = 0.050
EXCHANGES_ADDED = 2  # status check before the job + the one that finds the printer idle
RECEIPT_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 1.0

# Fixed document data (the same shapes as tests/printer/conftest.py).
TZ = timezone(timedelta(hours=3))
AT = datetime(2025, 3, 5, 14, 37, 12, tzinfo=TZ)
TERMINAL = receipts.TerminalInfo(
    terminal_id="10023456",
    address="г. Москва, ул. Примерная, д. 1",
    support_phone="8 800 000-00-00",
    agent_name='ООО "Пример Платежи"',
    status_url="https://pay.example.ru/s/{payment_id}",
)


def documents(printer_name: str) -> list[tuple[str, Document]]:
    return [
        (
            "payment receipt",
            receipts.payment_receipt(
                TERMINAL,
                receipts.PaymentReceiptData(
                    payment_id="10023456-000123",
                    created_at=AT,
                    provider_name="МТС «Мобильная связь»",
                    account="+7 916 ***-**-67",
                    inserted_minor=123450,
                    commission_minor=2500,
                    credited_minor=120950,
                    currency="RUB",
                ),
            ),
        ),
        (
            "unclaimed slip",
            receipts.unclaimed_slip(
                TERMINAL,
                receipts.UnclaimedData(
                    record_id="10023456-U000007",
                    created_at=AT,
                    amount_minor=50000,
                    currency="RUB",
                    reason="сеанс прерван — session aborted",
                ),
            ),
        ),
        (
            "encashment report",
            receipts.encashment_report(
                TERMINAL,
                receipts.EncashmentData(
                    encashment_id=17,
                    created_at=AT,
                    period_start=datetime(2025, 3, 1, 9, 0, 0, tzinfo=TZ),
                    technician="Иванов И.",
                    counts=((10000, 12), (500000, 3), (5000, 7)),
                    total_minor=1655000,
                    currency="RUB",
                ),
            ),
        ),
        ("test page", receipts.test_page(TERMINAL, printer_name)),
    ]


def fmt_bytes(n: int) -> str:
    return f"{n:,} B".replace(",", " ")


def line_time_s(n_bytes: int, baudrate: int) -> float:
    return n_bytes * BITS_PER_BYTE_8N1 / baudrate


def full_exchange_bytes() -> int:
    return len(cmd.status_request(cmd.StatusRequest.CUSTOM_FULL)) + FULL_STATUS_LENGTH


def realtime_exchange_bytes() -> int:
    return sum(len(cmd.status_request(r)) + 1 for r in REALTIME_ORDER)


def status_bytes(profile: Profile) -> int:
    full = PrinterSettings.from_profile(profile).full_status
    return full_exchange_bytes() if full else realtime_exchange_bytes()


@dataclass
class Job:
    name: str
    document: Document
    data: bytes  # what the encoder sends for it

    @property
    def size(self) -> int:
        return len(self.data)


class _PlayedLine:
    """The driver's port with the host's half of a serial line, for the cross-check.

    The simulator's `slow` mode already plays the line for print data (it takes the bytes
    at the line's pace from the moment they arrive), so data is handed on at once and only
    booked: flush() returns when the booked bytes' line time has passed, as tcdrain does
    on a UART (on a pty it returns at once). A real-time request (DLE EOT n, DLE ENQ n),
    which the simulator answers the moment it arrives, is handed on after the line is free
    and its own bytes have crossed it; its reply is readable after the reply's line time.
    """

    def __init__(self, port: Any, baudrate: int) -> None:
        self._port = port
        self._byte_s = line_time_s(1, baudrate)
        self._tx_free = 0.0

    def write(self, data: bytes, /) -> int | None:
        now = time.perf_counter()
        self._tx_free = max(self._tx_free, now) + len(data) * self._byte_s
        if _is_realtime(data):
            _sleep_until(self._tx_free)
        return self._port.write(data)

    def flush(self) -> None:
        self._port.flush()
        _sleep_until(self._tx_free)

    def read(self, size: int = 1) -> bytes:
        data = self._port.read(size)
        if data:
            time.sleep(len(data) * self._byte_s)
        return data

    def __getattr__(self, name: str) -> Any:  # reset_input_buffer, close, ...
        return getattr(self._port, name)


def _is_realtime(data: bytes) -> bool:
    return len(data) == 3 and data[0] == cmd.DLE and data[1] in (cmd.EOT, cmd.ENQ)


def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


class _Rig:
    """A simulator imitating the profile, and the real driver on its pty."""

    def __init__(self, profile: Profile, frame_log: Path, played_baud: int | None = None) -> None:
        self.sim = PrinterSimulator(SimConfig.from_profile(profile)).start()
        self.printer = EscposPrinter(profile, self.sim.path, frame_log_path=frame_log)
        self.printer.start()
        if played_baud is not None:
            # EscposPrinter has no port-opener hook; it keeps the port it opened in
            # start() until an error, so the wrapper goes there (bench only).
            port = self.printer._port
            if port is None:
                self.stop()
                raise BenchError(f"{profile.name}: the port did not open")
            self.printer._port = _PlayedLine(port, played_baud)
        if self.printer.status() is not PrinterStatus.OK:
            self.stop()
            raise BenchError(f"{profile.name}: the simulated printer is not OK")

    def print_timed(self, job: Job) -> float:
        """print_document() called → the later of its return and the simulator's cut."""
        count = len(self.sim.receipts)
        started = time.perf_counter()
        self.printer.print_document(job.document)
        returned = time.perf_counter()
        if not self.sim.wait_for_receipts(count + 1, RECEIPT_TIMEOUT_S):
            raise BenchError(f"{job.name}: no receipt within {RECEIPT_TIMEOUT_S:.0f} s")
        cut = time.perf_counter()
        self.sim.take_ticket()
        return max(returned, cut) - started

    def stop(self) -> None:
        self.printer.stop()
        self.sim.stop()


def _raw_print_s(sim: PrinterSimulator, fd: int, data: bytes) -> float:
    """The job's bytes written straight to the pty (no driver) → the simulator's cut."""
    count = len(sim.receipts)
    started = time.perf_counter()
    os.write(fd, data)
    if not sim.wait_for_receipts(count + 1, RECEIPT_TIMEOUT_S):
        raise BenchError("raw job: no receipt")
    return time.perf_counter() - started


def _raw_status_s(fd: int) -> float:
    """One DLE EOT 4 and its 1-byte answer on the pty, without the driver."""
    started = time.perf_counter()
    os.write(fd, cmd.status_request(cmd.StatusRequest.PAPER))
    ready, _, _ = select.select([fd], [], [], READ_TIMEOUT_S)
    if not ready or not os.read(fd, 1):
        raise BenchError("raw DLE EOT 4: no answer")
    return time.perf_counter() - started


def _open_raw(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY)


def run(ctx: Context) -> BenchResult:
    rounds = {9600: 2, 115200: 6} if ctx.quick else {9600: 4, 115200: 15}
    status_samples = 60 if ctx.quick else 400
    profile = printer_profile(PRINT_PROFILE)
    settings = PrinterSettings.from_profile(profile)
    if settings.columns != COLUMNS:
        raise BenchError(f"{PRINT_PROFILE} prints {settings.columns} columns, not {COLUMNS}")
    encoder = EscposEncoder(settings)
    jobs = [Job(n, d, encoder.encode_document(d)) for n, d in documents(profile.name)]
    exchange = full_exchange_bytes()
    times: dict[tuple[int, str], list[float]] = {(b, j.name): [] for b in BAUDS for j in jobs}
    raw_times: dict[int, list[float]] = {b: [] for b in BAUDS}
    status_times: dict[str, list[float]] = {}
    raw_status: list[float] = []

    with scratch_dir(ctx, "printer") as scratch:
        # Print time through the driver, bauds and documents interleaved round by round.
        rig = _Rig(profile, scratch / "print.frames")
        try:
            for job in jobs:  # warm-up at full speed, untimed
                rig.print_timed(job)
            for r in range(max(rounds.values())):
                for baud in BAUDS:
                    if r >= rounds[baud]:
                        continue
                    rig.sim.set_slow(ms_per_byte(baud))
                    for job in jobs:
                        times[(baud, job.name)].append(rig.print_timed(job))
        finally:
            rig.stop()
        # Contrast: the payment receipt through a profile whose driver does not wait.
        contrast_profile = printer_profile(CONTRAST_PROFILE)
        contrast_doc = jobs[0].document
        contrast = Job(
            jobs[0].name,
            contrast_doc,
            EscposEncoder(PrinterSettings.from_profile(contrast_profile)).encode_document(
                contrast_doc
            ),
        )
        contrast_times: list[float] = []
        rig = _Rig(contrast_profile, scratch / "contrast.frames")
        try:
            rig.print_timed(contrast)
            rig.sim.set_slow(ms_per_byte(JUDGED_BAUD))
            for _ in range(rounds[JUDGED_BAUD]):
                contrast_times.append(rig.print_timed(contrast))
        finally:
            rig.stop()
        # Cross-check: the same documents with the host's half of the line played too.
        played: dict[str, list[float]] = {j.name: [] for j in jobs}
        rig = _Rig(profile, scratch / "played.frames", played_baud=JUDGED_BAUD)
        try:
            rig.sim.set_slow(ms_per_byte(JUDGED_BAUD))
            for _ in range(rounds[JUDGED_BAUD]):
                for job in jobs:
                    played[job.name].append(rig.print_timed(job))
        finally:
            rig.stop()
        frames = (scratch / "print.frames").read_text(encoding="ascii").splitlines()
        status_tx = sum(1 for line in frames if " TX 10 04 14" in line)
        n_prints = len(jobs) * (1 + sum(rounds.values()))
        polls_per_print = status_tx / n_prints

        # The emulation alone: the payment receipt's bytes raw on a fresh simulator.
        sim = PrinterSimulator(SimConfig.from_profile(profile)).start()
        fd = _open_raw(sim.path)
        try:
            payment = jobs[0]
            for r in range(max(rounds.values())):
                for baud in BAUDS:
                    if r < rounds[baud]:
                        sim.set_slow(ms_per_byte(baud))
                        raw_times[baud].append(_raw_print_s(sim, fd, payment.data))
            sim.set_slow(0)
            for _ in range(status_samples):
                raw_status.append(_raw_status_s(fd))
        finally:
            os.close(fd)
            sim.stop()

        # Status answer through the driver, idle printer, per profile.
        for name in STATUS_PROFILES:
            p = printer_profile(name)
            rig = _Rig(p, scratch / f"{name}.frames")
            try:
                samples = []
                for _ in range(status_samples):
                    started = time.perf_counter()
                    report = rig.printer.status_report()
                    samples.append(time.perf_counter() - started)
                    if report.status is not PrinterStatus.OK:
                        raise BenchError(f"{name}: status {report.describe()}")
                status_times[name] = samples
            finally:
                rig.stop()

    result = BenchResult(
        KEY,
        TITLE,
        params=f"{PRINT_PROFILE} (42 columns, full status); per document "
        f"{rounds[115200]} prints at 115200 and {rounds[9600]} at 9600 baud, interleaved, "
        f"after one untimed warm-up each; {status_samples} status requests per profile",
    )
    for baud in (JUDGED_BAUD, WORST_BAUD):
        added = line_time_s(EXCHANGES_ADDED * exchange, baud)
        for job in jobs:
            samples = [t + added for t in times[(baud, job.name)]]
            med = median(samples)
            limit = line_time_s(job.size, baud)
            judged = baud == JUDGED_BAUD
            result.figures.append(
                Figure(
                    f"{job.name} ({fmt_bytes(job.size)}) at {baud} baud: median (max)",
                    f"{fmt_ms(med)} ({fmt_ms(max(samples))})",
                    f"line time {fmt_ms(limit)}",
                    f"×{med / limit:.2f}",
                    f"≤ {PRINT_TARGET_RATIO}× line time" if judged else "none (INFO)",
                    verdict(med <= PRINT_TARGET_RATIO * limit if judged else None),
                )
            )
    for job in jobs:
        samples = played[job.name]
        limit = line_time_s(job.size, JUDGED_BAUD)
        result.figures.append(
            Figure(
                f"cross-check, {job.name} over a played {JUDGED_BAUD}-baud line: median (max)",
                f"{fmt_ms(median(samples))} ({fmt_ms(max(samples))})",
                f"line time {fmt_ms(limit)}",
                f"×{median(samples) / limit:.2f}",
                "none (INFO: flush() waits like a UART)",
                verdict(None),
            )
        )
    added = line_time_s(EXCHANGES_ADDED * realtime_exchange_bytes(), JUDGED_BAUD)
    samples = [t + added for t in contrast_times]
    limit = line_time_s(contrast.size, JUDGED_BAUD)
    result.figures.append(
        Figure(
            f"contrast: payment receipt ({fmt_bytes(contrast.size)}) through {CONTRAST_PROFILE}"
            f" at {JUDGED_BAUD} baud: median (max)",
            f"{fmt_ms(median(samples))} ({fmt_ms(max(samples))})",
            f"line time {fmt_ms(limit)}",
            f"×{median(samples) / limit:.2f}",
            "none (INFO: its driver does not wait until printed)",
            verdict(None),
        )
    )
    for baud in (JUDGED_BAUD, WORST_BAUD):
        med = median(raw_times[baud])
        limit = line_time_s(jobs[0].size, baud)
        result.figures.append(
            Figure(
                f"emulation alone: payment receipt bytes raw on the pty at {baud} baud",
                f"{fmt_ms(med)} (max {fmt_ms(max(raw_times[baud]))})",
                f"line time {fmt_ms(limit)}",
                f"×{med / limit:.3f}",
                "none (the simulator's pacing)",
                verdict(None),
            )
        )
    for name in STATUS_PROFILES:
        p = printer_profile(name)
        baud = p.serial.baudrate
        n_bytes = status_bytes(p)
        line = line_time_s(n_bytes, baud)
        samples = [t + line for t in status_times[name]]
        p50, p99 = median(samples), percentile(samples, 99)
        worst = line_time_s(n_bytes, WORST_BAUD)
        kind = "DLE EOT 20" if n_bytes == exchange else "DLE EOT 1-4"
        result.figures.append(
            Figure(
                f"status answer, {name} ({kind}, {n_bytes} B at {baud} baud) p50 / p99",
                f"{fmt_ms(p50)} / {fmt_ms(p99)}",
                f"target {fmt_ms(STATUS_TARGET_S)}; raw pty exchange p50 "
                f"{fmt_us(median(raw_status))} + line time {fmt_ms(line)}",
                f"{p99 / STATUS_TARGET_S * 100:.0f}%",
                f"≤ {fmt_ms(STATUS_TARGET_S)} (p99)",
                verdict(p99 <= STATUS_TARGET_S),
            )
        )
        p99_worst = percentile(status_times[name], 99) + worst
        result.figures.append(
            Figure(
                f"status answer, {name} at {WORST_BAUD} baud p99",
                fmt_ms(p99_worst),
                f"target {fmt_ms(STATUS_TARGET_S)}; line time {fmt_ms(worst)}",
                f"{p99_worst / STATUS_TARGET_S * 100:.0f}%",
                "none (INFO: the slowest line a profile may use)",
                verdict(None),
            )
        )

    sizes = ", ".join(f"{j.name} {fmt_bytes(j.size)}" for j in jobs)
    result.details += [
        f"Bytes per document from the real encoder ({PRINT_PROFILE}: setup ESC @ / ESC = / "
        f"ESC R / ESC t 17, CP866 text, bold and double size, native QR, feed, GS V 0 cut, "
        f"FS P presenter): {sizes}.",
        "The simulator's slow mode plays the line: 10 bits a byte (8N1) divided by the baud "
        f"rate ({ms_per_byte(9600):.4f} ms a byte at 9600, {ms_per_byte(115200):.4f} ms at "
        "115200) on an absolute schedule, so its own error does not add up over a receipt "
        "(the 'emulation alone' rows). Status exchanges cross the pty at once: the line time "
        f"of {EXCHANGES_ADDED} full-status exchanges ({EXCHANGES_ADDED} × {exchange} B) is "
        "added to each print figure.",
        f"The driver polls the full status every {fmt_ms(BUSY_POLL_S)} until the printer "
        f"stops ({polls_per_print:.1f} DLE EOT 20 exchanges per job on average here, the "
        "check before the job included), so it sees the end of a job at the first poll "
        f"after it: up to {fmt_ms(BUSY_POLL_S)} late, depending on where the job's end "
        "falls in the poll cycle (a fixed phase for a given length, so the ratio is much "
        "the same in every run). That poll, not the line, is most of the margin used; the "
        f"contrast row ({CONTRAST_PROFILE}: one DLE EOT 1-4 check after sending, no wait) "
        "shows the line alone.",
        "The simulator interprets the cut (GS V 0) before the 6-byte FS P presenter command "
        "that follows it, so the 'emulation alone' rows end a few byte times before the "
        "job's full line time.",
        "Print time is from print_document() being called to the later of its return and "
        "the simulator's cut; the ticket is taken from the presenter after each job.",
        "Status answer: status_report() on an idle printer through the real driver (its lock, "
        "input flush, frame log and decoding), plus the line time of the bytes exchanged at "
        "the profile's own baud rate; the raw exchange is one DLE EOT 4 on the pty, the "
        f"simulator answering, without the driver: p50 {fmt_us(median(raw_status))}, p99 "
        f"{fmt_us(percentile(raw_status, 99))}.",
    ]
    return result
