"""The printer simulator: status replies per fault, reception, ESC/POS interpretation,
stdin control and the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.escpos import commands as c
from drivers.printer import Align
from drivers.sim.printer import (
    COMMAND_HELP,
    EscposInterpreter,
    Fault,
    InterpreterEvents,
    PrinterSimulator,
    Realtime,
    RealtimeSplitter,
    SimConfig,
    full_status_reply,
    realtime_reply,
)

from .conftest import REPO

H = bytes.fromhex
F = Fault


@pytest.mark.parametrize(
    ("faults", "replies"),
    [
        (set(), "12 12 12 12"),
        ({F.PAPER_NEAR_END}, "12 12 12 1e"),
        ({F.PAPER_OUT}, "1a 32 12 72"),
        ({F.COVER_OPEN}, "1a 16 12 12"),
        ({F.CUTTER_ERROR}, "1a 52 1a 12"),
        ({F.COVER_OPEN, F.PAPER_NEAR_END}, "1a 16 12 1e"),
    ],
)
def test_realtime_replies(faults: set[Fault], replies: str) -> None:
    got = bytes(realtime_reply(n, frozenset(faults)) for n in (1, 2, 3, 4))
    assert got == H(replies)


@pytest.mark.parametrize(
    ("faults", "kwargs", "reply"),
    [
        (set(), {}, "10 0f 00 00 00 00"),
        ({F.PAPER_NEAR_END}, {}, "10 0f 04 00 00 00"),
        ({F.PAPER_OUT}, {}, "10 0f 05 00 00 00"),
        ({F.COVER_OPEN}, {}, "10 0f 00 03 00 00"),
        ({F.CUTTER_ERROR}, {}, "10 0f 00 00 00 01"),
        (set(), {"printing": True, "ticket_in_presenter": True}, "10 0f 20 0c 00 00"),
    ],
)
def test_full_status_replies(faults, kwargs, reply) -> None:
    assert full_status_reply(frozenset(faults), **kwargs) == H(reply)


def test_splitter_takes_realtime_commands_out_of_the_stream() -> None:
    s = RealtimeSplitter()
    assert s.feed(b"ab\x10\x04\x01cd\x10\x05\x02") == [
        b"ab",
        Realtime(0x04, 1),
        b"cd",
        Realtime(0x05, 2),
    ]
    assert s.feed(b"x\x10\x04\x14") == [b"x", Realtime(0x04, 20)]
    # DLE followed by anything else is ordinary print data
    assert s.feed(b"\x10\x04\x09z") == [b"\x10\x04\x09z"]


def test_splitter_waits_for_a_command_cut_by_the_read() -> None:
    s = RealtimeSplitter()
    assert s.feed(b"ab\x10") == [b"ab"]
    assert s.feed(b"\x04") == []
    assert s.feed(b"\x04tail") == [Realtime(0x04, 4), b"tail"]


@given(st.binary(max_size=200), st.lists(st.integers(1, 20), max_size=30))
def test_splitter_is_independent_of_read_boundaries(data: bytes, cuts: list[int]) -> None:
    whole = RealtimeSplitter()
    expected = whole.feed(data)
    pieces = RealtimeSplitter()
    got: list[bytes | Realtime] = []
    i = 0
    for size in cuts:
        got += pieces.feed(data[i : i + size])
        i += size
    got += pieces.feed(data[i:])

    def normal(items):
        out: list[bytes | Realtime] = []
        for item in items:
            if isinstance(item, bytes) and out and isinstance(out[-1], bytes):
                out[-1] += item
            else:
                out.append(item)
        return out

    assert normal(got) == normal(expected)
    assert pieces._pending == whole._pending  # the same possible command prefix held back


def _run(data: bytes, columns: int = 20, codepage: int = 17) -> tuple[list[str], list[str]]:
    receipts: list[str] = []
    notes: list[str] = []
    interp = EscposInterpreter(
        SimConfig(columns=columns, codepage_number=codepage),
        InterpreterEvents(receipt=receipts.append, note=notes.append),
    )
    interp.feed(data)
    return receipts, notes


CP866_ON = c.initialize() + c.select_code_page(17)


def test_interpreter_text_and_cut() -> None:
    receipts, _ = _run(
        CP866_ON + "Чек\nline 2\n".encode("cp866") + c.feed_lines(3) + c.cut(c.CutMode.FULL)
    )
    assert receipts == ["Чек\nline 2\n"]


def test_interpreter_needs_the_right_code_page() -> None:
    """Without ESC t 17 the printer is in PC437 and Russian comes out as box drawing."""
    receipts, _ = _run(c.initialize() + "Чек\n".encode("cp866") + c.cut(c.CutMode.FULL))
    assert receipts == ["Чек".encode("cp866").decode("cp437") + "\n"]


def test_interpreter_wraps_at_the_paper_edge() -> None:
    receipts, _ = _run(
        CP866_ON
        + b"x" * 25
        + b"\n"
        + c.double_size(True)
        + b"y" * 12
        + b"\n"
        + c.cut(c.CutMode.ESC_I),
        columns=20,
    )
    assert receipts == ["x" * 20 + "\n" + "x" * 5 + "\n" + "y" * 10 + "\n" + "yy\n"]


def test_interpreter_graphics_and_alignment() -> None:
    data = (
        CP866_ON
        + c.align(Align.CENTER)
        + c.qr(b"QR1", 6, c.QrErrorLevel.M)
        + c.align(Align.RIGHT)
        + c.code128("AB")
        + c.align(Align.LEFT)
        + b"\x1dv0\x00\x01\x00\x02\x00\xff\xff"
        + b"\x1b*\x00\x02\x00\x01\x02"
        + c.cut(c.CutMode.FEED_PARTIAL, 2)
    )
    receipts, _ = _run(data, columns=20)
    assert receipts == ["     [QR: QR1]\n     [BARCODE: {BAB]\n[IMAGE 8x2]\n[IMAGE 2 dots]\n"]


def test_interpreter_input_split_anywhere_gives_the_same_receipt() -> None:
    data = (
        CP866_ON
        + c.bold(True)
        + "Платёж № 1\n".encode("cp866")
        + c.bold(False)
        + c.qr(b"https://x/1", 6, c.QrErrorLevel.M)
        + c.feed_lines(2)
        + c.cut(c.CutMode.FULL)
    )
    whole, _ = _run(data)
    receipts: list[str] = []
    interp = EscposInterpreter(SimConfig(columns=20), InterpreterEvents(receipt=receipts.append))
    for byte in data:
        interp.feed(bytes([byte]))
    assert receipts == whole


def test_interpreter_notes_unknown_commands_and_presenter() -> None:
    _, notes = _run(
        b"\x1b\x07"
        + b"\x1d\x07"
        + b"\x1c\x07"
        + c.custom_present(50, c.PresenterAction.EJECT, 0)
        + c.custom_gs_e(c.CustomPresenterFunction.PRESENT, 5)
        + c.citizen_auto_retract(3)
        + c.cut(c.CutMode.FULL)
    )
    assert notes[:3] == ["unknown ESC 07", "unknown GS 07", "unknown FS 07"]
    assert "present 0a 01 45 00" in notes
    assert "presenter GS e 3" in notes
    assert "presenter GS R 31 03" in notes
    assert notes[-1] == "cut with nothing printed"


@given(st.binary(max_size=400))
def test_interpreter_survives_any_bytes(data: bytes) -> None:
    receipts: list[str] = []
    interp = EscposInterpreter(SimConfig(columns=32), InterpreterEvents(receipt=receipts.append))
    interp.feed(data)
    interp.feed(c.cut(c.CutMode.FULL))
    assert all(isinstance(r, str) for r in receipts)


@given(st.lists(st.binary(max_size=40), max_size=10))
def test_interpreter_survives_any_chunks(chunks: list[bytes]) -> None:
    interp = EscposInterpreter(SimConfig(columns=42))
    for chunk in chunks:
        interp.feed(chunk)


def test_commands_from_stdin() -> None:
    events: list[str] = []
    sim = PrinterSimulator(SimConfig(), out=events.append)
    assert sim.command("paper_out\n")
    assert sim.faults == {F.PAPER_OUT}
    assert sim.command("cover_open")
    assert sim.faults == {F.PAPER_OUT, F.COVER_OPEN}
    assert sim.command("ok")
    assert sim.faults == frozenset()
    sim.command("cutter_error")
    sim.command("clear")
    assert sim.faults == frozenset()
    sim.command("slow 2.5")
    assert sim.state.slow_ms == 2.5
    sim.command("status")
    sim.command("bogus")
    sim.command("slow fast")
    sim.command("")
    sim.command("help")
    assert not sim.command("quit")
    assert events[:3] == ["fault paper_out", "fault cover_open", "clear"]
    assert events[5] == "slow 2.5 ms/byte"
    assert events[6].startswith("status faults=none receipts=0")
    assert events[7].startswith("error: cannot understand 'bogus'")
    assert events[8].startswith("error: cannot understand 'slow fast'")
    assert events[9] == COMMAND_HELP


def test_receipts_are_saved_as_numbered_files(tmp_path: Path) -> None:
    events: list[str] = []
    with PrinterSimulator(
        SimConfig(columns=20),
        receipts_dir=tmp_path / "r",
        link=tmp_path / "printer",
        out=events.append,
    ) as sim:
        assert (tmp_path / "printer").is_symlink()
        fd = os.open(tmp_path / "printer", os.O_RDWR | os.O_NOCTTY)
        try:
            for body in (b"one\n", b"two\n"):
                os.write(fd, CP866_ON + body + c.cut(c.CutMode.FULL))
            assert sim.wait_for_receipts(2, timeout=5)
        finally:
            os.close(fd)
    assert (tmp_path / "r" / "receipt_0001.txt").read_text(encoding="utf-8") == "one\n"
    assert (tmp_path / "r" / "receipt_0002.txt").read_text(encoding="utf-8") == "two\n"
    assert f"receipt 2 saved {tmp_path / 'r' / 'receipt_0002.txt'}" in events
    assert not (tmp_path / "printer").exists()  # the link goes away with the simulator


def _sim_cli(*args: str, stdin: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "drivers.sim.printer", *args],
        input=stdin,
        text=True,
        capture_output=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
    )


def test_cli_help_lists_the_commands() -> None:
    result = _sim_cli("--help", stdin="")
    assert result.returncode == 0
    for word in (
        "paper_near_end",
        "paper_out",
        "cover_open",
        "cutter_error",
        "offline",
        "ok | clear",
        "slow <ms>",
        "status",
        "quit",
        "--link",
        "--receipts",
    ):
        assert word in result.stdout


def test_cli_runs_and_quits(tmp_path: Path) -> None:
    link = tmp_path / "p"
    result = _sim_cli(
        "--link", str(link), "--profile", "generic_58mm", stdin="paper_near_end\nstatus\nquit\n"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"ready {link} (generic_58mm, 32 columns, ESC t 7)"
    assert lines[1] == "fault paper_near_end"
    assert lines[2].startswith("status faults=paper_near_end")


@pytest.mark.parametrize("stdin_open", [True, False], ids=["stdin-open", "stdin-closed"])
def test_cli_exits_cleanly_on_sigterm(tmp_path: Path, stdin_open: bool) -> None:
    """Issue 12: `kiosk sim printer` ignored SIGTERM while its stdin was open (a handler
    that only set a flag let the blocking read resume). A real process, a real signal."""
    link = tmp_path / "printer"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "drivers.sim.printer", "--link", str(link)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=REPO, env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("ready")
        assert link.is_symlink()
        if not stdin_open:
            proc.stdin.close()  # in the background: it runs until a signal
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""
        except subprocess.TimeoutExpired:  # say where it hangs: every thread's stack
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            proc.kill()
            raise AssertionError(f"no exit after SIGTERM; stacks:\n{proc.communicate()[1]}"
                                 ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not link.exists()  # stopped cleanly: the link went with the simulator


def test_cli_unknown_profile_is_a_clear_error() -> None:
    result = _sim_cli("--profile", "nope", stdin="quit\n")
    assert result.returncode == 2
    assert "no profile named 'nope'" in result.stderr


def test_cli_serves_a_driver(tmp_path: Path, printer_profiles) -> None:
    """The real command line, a real driver on its link, a receipt file on disk."""
    from drivers.escpos.printer import EscposPrinter
    from drivers.printer import Document, Text

    link = tmp_path / "printer"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "drivers.sim.printer",
            "--link",
            str(link),
            "--receipts",
            str(tmp_path / "r"),
            "--profile",
            "custom_vkp80iii",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().startswith("ready")
        printer = EscposPrinter(printer_profiles["custom_vkp80iii"], str(link))
        printer.start()
        try:
            printer.print_document(Document("test", (Text("Привет из CLI"),)))
        finally:
            printer.stop()
        deadline = time.monotonic() + 10
        line = ""
        while not line.startswith("receipt 1 saved") and time.monotonic() < deadline:
            line = proc.stdout.readline()
        assert line.startswith("receipt 1 saved")
        assert (tmp_path / "r" / "receipt_0001.txt").read_text(encoding="utf-8") == (
            "Привет из CLI\n"
        )
        proc.stdin.write("quit\n")
        proc.stdin.flush()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- further code-page tables and line pacing ------------------------------------------


def test_interpreter_knows_the_models_further_tables() -> None:
    """A model's other ESC t tables (here the Rongta clones' CP855 at 28) decode as that
    table; a number the model lacks still prints as PC437, like a wrong ESC t on paper."""
    receipts: list[str] = []
    interp = EscposInterpreter(
        SimConfig(columns=20, codepage_number=7, code_pages=((28, "cp855"),)),
        InterpreterEvents(receipt=receipts.append),
    )
    interp.feed(
        c.initialize()
        + c.select_code_page(28)
        + "Ёж №5\n".encode("cp855")
        + c.select_code_page(7)
        + "Ёж №5\n".encode("cp866")
        + c.select_code_page(6)
        + "Ёж\n".encode("cp1251")
        + c.cut(c.CutMode.FULL)
    )
    garbled = "Ёж".encode("cp1251").decode("cp437")
    assert receipts == [f"Ёж №5\nЁж №5\n{garbled}\n"]


@pytest.mark.parametrize(
    ("code_pages", "error"),
    [(((256, "cp855"),), ValueError), (((28, "no-such-codec"),), LookupError)],
)
def test_sim_config_rejects_bad_tables(code_pages, error) -> None:
    with pytest.raises(error):
        SimConfig(code_pages=code_pages)


def test_cli_code_page_option() -> None:
    from drivers.sim.printer import _load_config, build_parser

    args = build_parser().parse_args(["--code-page", "28=cp855", "--code-page", "6=cp1251"])
    assert _load_config(args).code_pages == ((28, "cp855"), (6, "cp1251"))
    assert _load_config(build_parser().parse_args([])).code_pages == ()
    for bad in ("28", "x=cp855", "300=cp855", "28=nope"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--code-page", bad])


def test_ms_per_byte_is_the_line_time_of_a_byte() -> None:
    from drivers.sim.printer import ms_per_byte

    assert ms_per_byte(9600) == pytest.approx(1.0416667)
    assert ms_per_byte(115200) == pytest.approx(0.0868056)
    assert ms_per_byte(9600, bits_per_byte=11) == pytest.approx(11000 / 9600)
    with pytest.raises(ValueError):
        ms_per_byte(0)


def test_slow_prints_no_sooner_than_the_bytes_take() -> None:
    """`slow` is an absolute per-byte schedule: the cut (the last byte) is interpreted no
    sooner than bytes x slow after the data arrived. Not a benchmark: the upper bound is
    loose (bench/printer.py measures how close it is)."""
    body = b"".join(b"line %02d ..............\n" % i for i in range(20))
    data = CP866_ON + body + c.cut(c.CutMode.FULL)
    slow_ms = 0.5
    with PrinterSimulator(SimConfig(columns=42)) as sim:
        sim.set_slow(slow_ms)
        fd = os.open(sim.path, os.O_RDWR | os.O_NOCTTY)
        try:
            started = time.monotonic()
            os.write(fd, data)
            assert sim.wait_for_receipts(1, timeout=10)
            elapsed = time.monotonic() - started
        finally:
            os.close(fd)
        assert sim.receipts[0].count("\n") == 20
    line_time = len(data) * slow_ms / 1000
    assert line_time <= elapsed < line_time + 1.0
