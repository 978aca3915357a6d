"""EscposPrinter against the pty simulator: every fault, offline, refusals, mid-print
failure, and the bytes on the line."""

from __future__ import annotations

import os
import select
import threading
import time
from dataclasses import replace

import pytest

from drivers.escpos.printer import STATUS_ATTEMPTS, EscposPrinter
from drivers.escpos.settings import PrinterSettings
from drivers.printer import Document, PrinterError, PrinterStatus, Text
from drivers.sim.printer import Fault
from drivers.transport import open_pty

FULL = "custom_vkp80iii"  # answers Custom full status
REALTIME = "epson_tmt88"  # DLE EOT 1-4 only
BOTH = [FULL, REALTIME]

FAULT_STATUS = [
    (Fault.PAPER_NEAR_END, PrinterStatus.PAPER_NEAR_END),
    (Fault.PAPER_OUT, PrinterStatus.PAPER_OUT),
    (Fault.COVER_OPEN, PrinterStatus.COVER_OPEN),
    (Fault.CUTTER_ERROR, PrinterStatus.CUTTER_ERROR),
    (Fault.OFFLINE, PrinterStatus.OFFLINE),
]

SMALL = Document("test", (Text("Проверка печати"),))


@pytest.mark.parametrize("profile", BOTH)
def test_ok_when_healthy(rig, profile) -> None:
    _, printer = rig(profile)
    assert printer.status() is PrinterStatus.OK
    assert printer.last_report.details == ()


@pytest.mark.parametrize("profile", BOTH)
@pytest.mark.parametrize(("fault", "status"), FAULT_STATUS)
def test_each_fault_gives_its_status(rig, profile, fault, status) -> None:
    sim, printer = rig(profile)
    sim.set_fault(fault)
    assert printer.status() is status
    sim.clear()
    assert printer.status() is PrinterStatus.OK


@pytest.mark.parametrize("profile", BOTH)
def test_offline_within_the_timeout(rig, profile) -> None:
    sim, printer = rig(profile)
    sim.set_fault(Fault.OFFLINE)
    timeout_s = printer.settings.status_timeout_ms / 1000
    started = time.monotonic()
    report = printer.status_report()
    elapsed = time.monotonic() - started
    assert report.status is PrinterStatus.OFFLINE
    assert "within 200 ms" in report.details[0]
    # asked twice (STATUS_ATTEMPTS), each bounded; a read slice of slack, never "forever"
    assert elapsed < STATUS_ATTEMPTS * timeout_s + 0.15


@pytest.mark.parametrize("profile", BOTH)
def test_one_lost_status_reply_is_asked_again_not_offline(rig, profile) -> None:
    """A reply lost on the line (noise, a USB-serial hiccup) neither fails the receipt nor
    reports the printer offline; two lost in a row do."""
    sim, printer = rig(profile)
    sim.lose_replies(1)
    assert printer.status() is PrinterStatus.OK
    assert any(e.startswith("status reply to DLE EOT") for e in sim.events)
    sim.lose_replies(1)
    printer.print_document(SMALL)  # the check before the job loses its first reply
    assert sim.wait_for_receipts(1, timeout=5)
    sim.lose_replies(STATUS_ATTEMPTS)
    assert printer.status() is PrinterStatus.OFFLINE
    assert printer.status() is PrinterStatus.OK  # the line is clean again


@pytest.mark.parametrize("profile", BOTH)
@pytest.mark.parametrize(
    ("fault", "words"),
    [
        (Fault.PAPER_OUT, "paper out"),
        (Fault.COVER_OPEN, "cover open"),
        (Fault.CUTTER_ERROR, "cutter error"),
        (Fault.OFFLINE, r"offline \(no reply"),
    ],
)
def test_print_is_refused_with_a_reason(rig, profile, fault, words) -> None:
    sim, printer = rig(profile)
    sim.set_fault(fault)
    with pytest.raises(PrinterError, match=rf"cannot print: {words}"):
        printer.print_document(SMALL)
    sim.clear()
    assert sim.wait_idle(timeout=5)
    assert sim.receipts == []  # nothing was sent, so nothing comes out later


@pytest.mark.parametrize("profile", BOTH)
def test_prints_on_paper_near_end(rig, profile) -> None:
    sim, printer = rig(profile)
    sim.set_fault(Fault.PAPER_NEAR_END)
    printer.print_document(SMALL)
    assert sim.wait_for_receipts(1, timeout=5)
    assert sim.receipts == ["Проверка печати\n"]


def test_full_status_waits_until_printed(rig) -> None:
    sim, printer = rig(FULL)
    sim.set_slow(0.2)  # ~100 bytes -> ~20 ms of "printing"
    printer.print_document(SMALL)
    assert len(sim.receipts) == 1  # already out when print_document returned
    assert printer.last_report.ticket_in_presenter


def test_paper_out_during_printing_is_reported_and_buffer_cleared(rig, printer_profiles) -> None:
    sim, _ = rig(FULL)
    profile = printer_profiles[FULL]
    settings = replace(PrinterSettings.from_profile(profile), realtime_clear=True)
    printer = EscposPrinter(profile, sim.path, settings=settings)
    printer.start()
    try:
        sim.set_slow(2.0)  # ~1 s of printing; the fault lands after a few lines
        long_doc = Document("test", tuple(Text(f"строка {i}") for i in range(40)))
        timer = threading.Timer(0.3, sim.set_fault, args=(Fault.PAPER_OUT,))
        timer.start()
        with pytest.raises(PrinterError, match="stopped while printing test: paper out"):
            printer.print_document(long_doc)
        timer.join()
        assert sim.wait_for_event("buffer cleared (DLE ENQ 2)", timeout=5)
        sim.set_slow(0)
        sim.clear()
        assert sim.wait_idle(timeout=5)
        # The half-printed receipt is never finished as a stale burst after reloading,
        # and the next receipt starts clean.
        assert sim.receipts == []
        assert any(e.startswith("partial receipt discarded") for e in sim.events)
        printer.print_document(SMALL)
        assert sim.wait_for_receipts(1, timeout=5)
        assert sim.receipts == ["Проверка печати\n"]
    finally:
        printer.stop()


def test_without_clear_the_rest_prints_after_reload(rig) -> None:
    """The behaviour realtime_clear prevents (docs/protocols/escpos.md, "Stale jobs"),
    shown once."""
    sim, printer = rig(FULL)
    assert not printer.settings.realtime_clear
    sim.set_slow(2.0)
    long_doc = Document("test", tuple(Text(f"строка {i}") for i in range(40)))
    timer = threading.Timer(0.1, sim.set_fault, args=(Fault.PAPER_OUT,))
    timer.start()
    with pytest.raises(PrinterError, match="may be incomplete"):
        printer.print_document(long_doc)
    timer.join()
    sim.set_slow(0)
    sim.clear()
    assert sim.wait_for_receipts(1, timeout=5)


def test_full_status_profile_on_a_printer_without_it_is_offline(rig) -> None:
    _, printer = rig(FULL, full_status=False)
    report = printer.status_report()
    assert report.status is PrinterStatus.OFFLINE
    assert report.details == ("no reply to full status within 200 ms",)


def test_wrong_code_page_number_garbles_russian(rig) -> None:
    """Why ESC t n is per model: a printer whose CP866 is 17 given ESC t 7 prints PC437."""
    sim, printer = rig("generic_58mm", codepage_number=17)
    printer.print_document(SMALL)
    assert sim.wait_for_receipts(1, timeout=5)
    assert sim.receipts[0] == "Проверка печати".encode("cp866").decode("cp437") + "\n"


def test_missing_port_is_offline_not_a_crash(printer_profiles, tmp_path) -> None:
    printer = EscposPrinter(printer_profiles[REALTIME], str(tmp_path / "no-such-port"))
    printer.start()
    report = printer.status_report()
    assert report.status is PrinterStatus.OFFLINE
    assert "cannot open serial port" in report.details[0]
    with pytest.raises(PrinterError, match="cannot print: offline"):
        printer.print_document(SMALL)
    printer.stop()


def test_garbage_reply_is_offline_with_the_reason(printer_profiles) -> None:
    pty = open_pty()
    stop = threading.Event()

    def answer_garbage() -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([pty.master_fd], [], [], 0.05)
                if ready and os.read(pty.master_fd, 64):
                    os.write(pty.master_fd, b"\xff")
            except OSError:
                return

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    printer = EscposPrinter(printer_profiles[REALTIME], pty.path)
    printer.start()
    try:
        report = printer.status_report()
        assert report.status is PrinterStatus.OFFLINE
        assert report.details[0].startswith("bad status reply: DLE EOT 1: reply ff")
    finally:
        printer.stop()
        stop.set()
        pty.close()
        thread.join(timeout=2)


def test_status_answer_is_fast(rig) -> None:
    """Not a benchmark: a sanity bound far above the 50 ms target on a pty."""
    _, printer = rig(REALTIME)
    started = time.monotonic()
    for _ in range(10):
        assert printer.status() is PrinterStatus.OK
    assert (time.monotonic() - started) / 10 < 0.1


def test_frames_are_logged(rig, tmp_path) -> None:
    sim, printer = rig(FULL)
    printer.print_document(SMALL)
    assert sim.wait_for_receipts(1, timeout=5)
    printer.stop()
    log = (tmp_path / f"{FULL}.frames").read_text(encoding="ascii")
    assert "TX 10 04 14" in log
    assert "RX 10 0f 00 00 00 00" in log
    assert "TX 1b 40 1b 3d 01 1b 52 00 1b 74 11" in log


def test_concurrent_status_and_print_do_not_interleave(rig) -> None:
    sim, printer = rig(REALTIME)
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            for _ in range(30):
                assert printer.status() is PrinterStatus.OK
        except BaseException as exc:  # surfaced by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in range(5):
        printer.print_document(SMALL)
    for t in threads:
        t.join(timeout=10)
    assert errors == []
    assert sim.wait_for_receipts(5, timeout=5)
    assert sim.receipts == ["Проверка печати\n"] * 5


def test_factory_builds_from_config_words(tmp_path, rig) -> None:
    from drivers.escpos.factory import build_escpos_printer
    from drivers.profiles import ProfileError

    sim, _ = rig(FULL)
    printer = build_escpos_printer(sim.path, FULL, tmp_path / "log")
    printer.start()
    try:
        assert printer.status() is PrinterStatus.OK
        assert printer.columns == 42
    finally:
        printer.stop()
    assert "TX 10 04 14" in (tmp_path / "log" / "printer-frames.log").read_text(encoding="ascii")
    with pytest.raises(ProfileError, match=r"required.*custom_vkp80iii"):
        build_escpos_printer(sim.path, "", None)
    with pytest.raises(ProfileError, match="no ESC/POS printer profile named 'x'"):
        build_escpos_printer(sim.path, "x", None)
