"""ESC/POS receipt-printer simulator on a pseudo-terminal.

It answers DLE EOT 1-4 and the Custom full status (10 04 14) from its fault state,
interprets what it receives (CP866 text, styles, QR, cuts, presenter) into plain text,
and keeps every receipt (the text between two cuts). Like a real printer it splits
real-time commands off at reception (they are answered even while it is busy or holding
data), holds print data while paper is out / the cover is open / the cutter is jammed and
prints it when the fault clears, and says nothing at all when "offline".

Run it with `kiosk sim printer --link /tmp/printer` (or `python -m drivers.sim.printer`)
and type fault commands on stdin; tests drive `PrinterSimulator` in-process.
"""

from __future__ import annotations

import argparse
import codecs
import enum
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from drivers.escpos.commands import (
    DLE,
    ENQ,
    EOT,
    ESC,
    FS,
    GS,
    LF,
    QR_CN,
    QR_FN_PRINT,
    QR_FN_STORE,
    Recovery,
    StatusRequest,
)
from drivers.escpos.settings import PrinterSettings
from drivers.layout import align_line, block_lines
from drivers.printer import Align, QrCode
from drivers.profiles import DEFAULT_DIR, Profile, ProfileError, load_profile, load_profiles
from drivers.sim.stop_signal import Terminated, stop_on_sigterm, wait_for_stop
from drivers.transport import PseudoTerminal, open_pty

DEFAULT_COLUMNS = 42
DEFAULT_CODEPAGE = 17
POWER_ON_TABLE = 0  # ESC t after ESC @ / power-on: PC437 on every model we know
CP866 = "cp866"
PC437 = "cp437"
QR_ENCODING = "utf-8"
READ_SIZE = 4096
SELECT_TIMEOUT_S = 0.05
PRINT_CHUNK = 64  # bytes interpreted per step at full speed
# With a per-byte delay ("slow"), one step holds at most this much printing time, so the
# "printing" bit, faults and DLE ENQ 2 act within about this long, at any speed.
PACE_STEP_S = 0.005
MS = 1000.0
BITS_PER_BYTE_8N1 = 10  # start bit, 8 data bits, stop bit

HT = 0x09
CR = 0x0D
SPACE = 0x20

REALTIME_REQUESTS = frozenset(int(r) for r in StatusRequest)
RECOVERY_CODES = frozenset(int(r) for r in Recovery)

# Status reply bits (docs/protocols/escpos.md, "Status") as the simulator sets them.
RT_BASE = 0x12
RT_OFFLINE = 0x08
RT_COVER = 0x04
RT_PAPER_END_STOP = 0x20
RT_ERROR = 0x40
RT_AUTOCUTTER = 0x08
RT_NEAR_END = 0x0C
RT_PAPER_END = 0x60
FULL_HEADER = bytes([0x10, 0x0F])
FULL_P_ABSENT = 0x01
FULL_P_NEAR_END = 0x04
FULL_P_TICKET = 0x20
FULL_U_COVER = 0x03  # head up + cover open, as e-kiosk reads it
FULL_U_SPOOLING = 0x04
FULL_U_MOTOR = 0x08
FULL_X_CUTTER = 0x01


class Fault(enum.Enum):
    PAPER_NEAR_END = "paper_near_end"
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    CUTTER_ERROR = "cutter_error"
    OFFLINE = "offline"


# Faults under which the mechanism cannot print: data is held until they clear.
HOLDING_FAULTS = frozenset({Fault.PAPER_OUT, Fault.COVER_OPEN, Fault.CUTTER_ERROR})

COMMAND_HELP = """stdin commands (one per line):
  paper_near_end   paper low (still prints)
  paper_out        no paper: data is held until cleared
  cover_open       cover open: data is held until cleared
  cutter_error     cutter jammed: data is held until cleared
  offline          stop answering status and drop all data
  ok | clear       clear every fault (held data then prints)
  slow <ms>        spend <ms> per received byte printing (0 = full speed);
                   10000 / baud emulates a line: 1.0417 = 9600 baud, 0.0868 = 115200
  take             the customer takes the ticket from the presenter
  lose <n>         the next <n> status replies are lost on the line (default 1)
  status           print faults, receipts and bytes waiting
  help             this list
  quit             stop the simulator"""


@dataclass(frozen=True)
class SimConfig:
    """What model the simulator pretends to be."""

    name: str = "sim"
    columns: int = DEFAULT_COLUMNS
    codepage_number: int = DEFAULT_CODEPAGE  # the ESC t n that selects CP866
    full_status: bool = True  # answers 10 04 14 (Custom); False: stays silent like Epson
    # Further ESC t tables this model has, as (n, Python codec), e.g. ((28, "cp855"),) for
    # the Rongta clones (docs/protocols/escpos.md, "Code page"). An n in neither place prints as the
    # power-on table (PC437), the way a wrong ESC t garbles Russian on a real printer.
    code_pages: tuple[tuple[int, str], ...] = ()

    def __post_init__(self) -> None:
        for number, codec in self.code_pages:
            if not 0 <= number <= 0xFF:
                raise ValueError(f"ESC t number must be 0..255, got {number}")
            codecs.lookup(codec)  # LookupError names an unknown codec

    @classmethod
    def from_profile(cls, profile: Profile) -> SimConfig:
        s = PrinterSettings.from_profile(profile)
        return cls(s.name, s.columns, s.codepage_number, s.full_status)


def ms_per_byte(baudrate: int, bits_per_byte: int = BITS_PER_BYTE_8N1) -> float:
    """The `slow` value that makes printing take a serial line's time (8N1: 10 bits)."""
    if baudrate <= 0:
        raise ValueError(f"baud rate must be positive, got {baudrate}")
    return bits_per_byte * MS / baudrate


# --- status replies ------------------------------------------------------------------


def realtime_reply(request: int, faults: frozenset[Fault]) -> int:
    """The one byte a printer with these faults answers to DLE EOT `request` (1..4)."""
    reply = RT_BASE
    if request == StatusRequest.PRINTER:
        if faults & HOLDING_FAULTS:
            reply |= RT_OFFLINE
    elif request == StatusRequest.OFFLINE_CAUSE:
        if Fault.COVER_OPEN in faults:
            reply |= RT_COVER
        if Fault.PAPER_OUT in faults:
            reply |= RT_PAPER_END_STOP
        if Fault.CUTTER_ERROR in faults:
            reply |= RT_ERROR
    elif request == StatusRequest.ERROR_CAUSE:
        if Fault.CUTTER_ERROR in faults:
            reply |= RT_AUTOCUTTER
    elif request == StatusRequest.PAPER:
        if Fault.PAPER_NEAR_END in faults:
            reply |= RT_NEAR_END
        if Fault.PAPER_OUT in faults:
            reply |= RT_PAPER_END
    return reply


def full_status_reply(
    faults: frozenset[Fault], *, printing: bool = False, ticket_in_presenter: bool = False
) -> bytes:
    """Custom `10 0F P U R X` for these faults."""
    paper = user = recoverable = unrecoverable = 0
    if Fault.PAPER_OUT in faults:
        paper |= FULL_P_ABSENT | FULL_P_NEAR_END
    if Fault.PAPER_NEAR_END in faults:
        paper |= FULL_P_NEAR_END
    if ticket_in_presenter:
        paper |= FULL_P_TICKET
    if Fault.COVER_OPEN in faults:
        user |= FULL_U_COVER
    if printing:
        user |= FULL_U_SPOOLING | FULL_U_MOTOR
    if Fault.CUTTER_ERROR in faults:
        unrecoverable |= FULL_X_CUTTER
    return FULL_HEADER + bytes([paper, user, recoverable, unrecoverable])


# --- reception: real-time commands are split off before the print buffer --------------


@dataclass(frozen=True)
class Realtime:
    """A DLE EOT n (status) or DLE ENQ n (recovery) found in the byte stream."""

    function: int  # EOT or ENQ
    n: int


class RealtimeSplitter:
    """Finds DLE EOT n / DLE ENQ n anywhere in the stream, across read boundaries,
    as printers do at reception; everything else is print data, in order."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes | Realtime]:
        buf = self._pending + data
        self._pending = b""
        out: list[bytes | Realtime] = []
        start = i = 0
        while i < len(buf):
            if buf[i] != DLE:
                i += 1
                continue
            if i + 2 >= len(buf):  # maybe a command cut by the read boundary
                break
            function, n = buf[i + 1], buf[i + 2]
            if (function == EOT and n in REALTIME_REQUESTS) or (
                function == ENQ and n in RECOVERY_CODES
            ):
                if i > start:
                    out.append(buf[start:i])
                out.append(Realtime(function, n))
                i += 3
                start = i
            else:
                i += 1
        if i < len(buf):  # a DLE (or DLE x) at the very end: wait for the next read
            self._pending = buf[i:]
            end = i
        else:
            end = len(buf)
        if end > start:
            out.append(buf[start:end])
        return out


# --- interpretation of the print stream ------------------------------------------------

# Fixed-length commands: the byte after ESC / GS / FS -> number of parameter bytes.
# fmt: off
ESC_PARAMS: dict[str, int] = {
    "@": 0, "t": 1, "R": 1, "E": 1, "!": 1, "a": 1, "d": 1, "J": 1, "2": 0, "3": 1,
    "M": 1, "-": 1, "=": 1, "i": 0, "m": 0, "G": 1, "V": 1, "{": 1, "S": 0, "L": 0,
    "p": 3, "c": 2, "v": 0, "r": 1, " ": 1, "$": 2, "\\": 2, "U": 1, "T": 1, "F": 1,
    "%": 1, "e": 1, "K": 1,
}
GS_PARAMS: dict[str, int] = {
    "!": 1, "h": 1, "w": 1, "H": 1, "f": 1, "a": 1, "r": 1, "I": 1, "B": 1, "L": 2,
    "W": 2, "b": 1, "P": 2, ":": 0, "/": 1, "^": 3, "\xe0": 1,
}
FS_PARAMS: dict[str, int] = {"P": 4, ".": 0, "&": 0, "C": 1, "K": 1}
# fmt: on
CUT_WITH_FEED = frozenset({65, 66, 97, 98, 103, 104})
CUT_WITHOUT_FEED = frozenset({0, 1, 48, 49})
BARCODE_FUNCTION_B_MIN = 65
GS_E_PRESENT = 3
GS_E_WITH_PARAM = frozenset({GS_E_PRESENT, 0x12, 0x14})
GS_R_AUTO = ord("1")
ESC_BITIMAGE_WIDE = frozenset({32, 33})
ALIGN_BY_CODE: dict[int, Align] = {
    0: Align.LEFT,
    48: Align.LEFT,
    1: Align.CENTER,
    49: Align.CENTER,
    2: Align.RIGHT,
    50: Align.RIGHT,
}
PRINT_MODE_DOUBLE_WIDTH = 0x20
NEED_MORE = 0


@dataclass
class _Line:
    text: str = ""
    width: int = 0  # in normal-font columns
    align: Align = Align.LEFT


@dataclass
class InterpreterEvents:
    """What the interpreter tells its owner (callbacks so it stays free of I/O)."""

    receipt: Callable[[str], None] = lambda text: None
    note: Callable[[str], None] = lambda text: None


class EscposInterpreter:
    """Turns an ESC/POS byte stream into lines of text and finished receipts.

    Tolerant by design: unknown or malformed commands are skipped (and noted), never
    raised, because a printer does not crash on garbage and neither may the simulator.
    """

    def __init__(self, config: SimConfig, events: InterpreterEvents | None = None) -> None:
        self.config = config
        self.events = events or InterpreterEvents()
        self._buf = b""
        self._tables = dict(config.code_pages)
        self.lines: list[str] = []
        self._reset_modes()
        self._line = _Line()
        self._qr_data = b""

    def _reset_modes(self) -> None:
        self.table = POWER_ON_TABLE
        self.align = Align.LEFT
        self.width_mult = 1

    @property
    def codec(self) -> str:
        if self.table == self.config.codepage_number:
            return CP866
        return self._tables.get(self.table, PC437)

    # -- output ------------------------------------------------------------------------

    def _flush_line(self) -> None:
        line = self._line
        pad_columns = max(0, self.config.columns - line.width)
        text = line.text
        if line.align is not Align.LEFT and pad_columns:
            mult = max(1, self.width_mult)
            spaces = (pad_columns // 2 if line.align is Align.CENTER else pad_columns) // mult
            text = " " * spaces + text
        self.lines.append(text.rstrip())
        self._line = _Line(align=self.align)

    def _newline(self) -> None:
        self._flush_line()

    def _text(self, data: bytes) -> None:
        for ch in data.decode(self.codec, errors="replace"):
            if self._line.width + self.width_mult > self.config.columns:
                self._flush_line()  # the printer wraps at the paper edge
            if not self._line.text:
                self._line.align = self.align
            self._line.text += ch
            self._line.width += self.width_mult

    def _graphic(self, label: str) -> None:
        """A QR/barcode/image: its own line, positioned by the current alignment."""
        if self._line.text:
            self._flush_line()
        self.lines.append(align_line(label, self.config.columns, self.align).rstrip())
        self._line = _Line(align=self.align)

    def _qr(self, data: str) -> None:
        """A QR symbol shown the way drivers.layout shows one in plain text, so paper and
        preview stay comparable whatever that convention is."""
        if self._line.text:
            self._flush_line()
        self.lines += [line.rstrip() for line in block_lines(QrCode(data), self.config.columns)]
        self._line = _Line(align=self.align)

    def _cut(self) -> None:
        if self._line.text:
            self._flush_line()
        lines = list(self.lines)
        while lines and not lines[-1]:
            lines.pop()
        self.lines = []
        if lines:
            self.events.receipt("\n".join(lines) + "\n")
        else:
            self.events.note("cut with nothing printed")

    def abandon(self) -> None:
        """DLE ENQ 2 after an error: the job is dropped, and what already came out of
        the head is torn off with the failed roll rather than glued to the next receipt."""
        if self.lines or self._line.text:
            self.events.note(f"partial receipt discarded ({len(self.lines)} lines)")
        self.lines = []
        self.reset_buffer()

    def reset_buffer(self) -> None:
        """DLE ENQ 2: forget unprinted data (the current partial line and unparsed bytes)."""
        self._buf = b""
        self._line = _Line(align=self.align)

    # -- parsing -----------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._buf += data
        i = 0
        buf = self._buf
        while i < len(buf):
            used = self._step(buf, i)
            if used == NEED_MORE:
                break
            i += used
        self._buf = buf[i:]

    def _step(self, buf: bytes, i: int) -> int:
        """Interpret one item at buf[i]; return bytes used, or NEED_MORE."""
        b = buf[i]
        if b >= SPACE:
            j = i
            while j < len(buf) and buf[j] >= SPACE:
                j += 1
            self._text(buf[i:j])
            return j - i
        if b == LF:
            self._newline()
            return 1
        if b == HT:
            self._text(b" ")
            return 1
        if b == ESC:
            return self._esc(buf, i)
        if b == GS:
            return self._gs(buf, i)
        if b == FS:
            return self._fs(buf, i)
        if b == DLE:
            return self._dle(buf, i)
        return 1  # CR and other control bytes: ignored

    @staticmethod
    def _need(buf: bytes, i: int, length: int) -> bool:
        return i + length > len(buf)

    def _esc(self, buf: bytes, i: int) -> int:
        if self._need(buf, i, 2):
            return NEED_MORE
        op = buf[i + 1]
        if op == ord("*"):  # bit image: ESC * m nL nH data
            if self._need(buf, i, 5):
                return NEED_MORE
            dots = buf[i + 3] | buf[i + 4] << 8
            size = 5 + dots * (3 if buf[i + 2] in ESC_BITIMAGE_WIDE else 1)
            if self._need(buf, i, size):
                return NEED_MORE
            self._graphic(f"[IMAGE {dots} dots]")
            return size
        params = ESC_PARAMS.get(chr(op))
        if params is None:
            self.events.note(f"unknown ESC {op:02x}")
            return 2
        if self._need(buf, i, 2 + params):
            return NEED_MORE
        arg = buf[i + 2] if params else 0
        if op == ord("@"):
            self.reset_buffer()
            self._reset_modes()
        elif op == ord("t"):
            self.table = arg
        elif op == ord("a"):
            self.align = ALIGN_BY_CODE.get(arg, self.align)
            if not self._line.text:
                self._line.align = self.align
        elif op == ord("!"):
            self.width_mult = 2 if arg & PRINT_MODE_DOUBLE_WIDTH else 1
        elif op == ord("d"):
            for _ in range(arg):
                self._newline()
        elif op in (ord("i"), ord("m")):
            self._cut()
        return 2 + params

    def _gs(self, buf: bytes, i: int) -> int:
        if self._need(buf, i, 2):
            return NEED_MORE
        op = buf[i + 1]
        if op == ord("("):
            return self._gs_paren(buf, i)
        if op == ord("V"):
            if self._need(buf, i, 3):
                return NEED_MORE
            mode = buf[i + 2]
            size = 4 if mode in CUT_WITH_FEED else 3
            if self._need(buf, i, size):
                return NEED_MORE
            if mode not in CUT_WITH_FEED and mode not in CUT_WITHOUT_FEED:
                self.events.note(f"GS V with unknown mode {mode}")
            self._cut()
            return size
        if op == ord("k"):
            return self._barcode(buf, i)
        if op == ord("v"):  # raster: GS v 0 m xL xH yL yH data
            if self._need(buf, i, 8):
                return NEED_MORE
            width = buf[i + 4] | buf[i + 5] << 8
            height = buf[i + 6] | buf[i + 7] << 8
            size = 8 + width * height
            if self._need(buf, i, size):
                return NEED_MORE
            self._graphic(f"[IMAGE {width * 8}x{height}]")
            return size
        if op == ord("e"):  # Custom presenter: GS e n [m]
            if self._need(buf, i, 3):
                return NEED_MORE
            size = 4 if buf[i + 2] in GS_E_WITH_PARAM else 3
            if self._need(buf, i, size):
                return NEED_MORE
            self.events.note(f"presenter GS e {buf[i + 2]}")
            return size
        if op == ord("R"):  # Citizen retract: GS R 0 | GS R 1 n
            if self._need(buf, i, 3):
                return NEED_MORE
            size = 4 if buf[i + 2] == GS_R_AUTO else 3
            if self._need(buf, i, size):
                return NEED_MORE
            self.events.note(f"presenter GS R {buf[i + 2 : i + size].hex(' ')}")
            return size
        params = GS_PARAMS.get(chr(op))
        if params is None:
            self.events.note(f"unknown GS {op:02x}")
            return 2
        if self._need(buf, i, 2 + params):
            return NEED_MORE
        if op == ord("!"):
            self.width_mult = (buf[i + 2] >> 4) + 1
        return 2 + params

    def _gs_paren(self, buf: bytes, i: int) -> int:
        """GS ( x pL pH data: every GS ( command carries its own length."""
        if self._need(buf, i, 5):
            return NEED_MORE
        length = buf[i + 3] | buf[i + 4] << 8
        size = 5 + length
        if self._need(buf, i, size):
            return NEED_MORE
        body = buf[i + 5 : i + size]
        if buf[i + 2] == ord("k") and len(body) >= 2 and body[0] == QR_CN:
            fn = body[1]
            if fn == QR_FN_STORE and len(body) >= 3:
                self._qr_data = body[3:]
            elif fn == QR_FN_PRINT:
                self._qr(self._qr_data.decode(QR_ENCODING, errors="replace"))
        return size

    def _barcode(self, buf: bytes, i: int) -> int:
        if self._need(buf, i, 3):
            return NEED_MORE
        system = buf[i + 2]
        if system >= BARCODE_FUNCTION_B_MIN:
            if self._need(buf, i, 4):
                return NEED_MORE
            size = 4 + buf[i + 3]
            if self._need(buf, i, size):
                return NEED_MORE
            data = buf[i + 4 : size + i]
        else:  # function A: NUL-terminated
            end = buf.find(b"\x00", i + 3)
            if end < 0:
                return NEED_MORE
            size = end + 1 - i
            data = buf[i + 3 : end]
        self._graphic(f"[BARCODE: {data.decode('latin-1')}]")
        return size

    def _fs(self, buf: bytes, i: int) -> int:
        if self._need(buf, i, 2):
            return NEED_MORE
        op = buf[i + 1]
        params = FS_PARAMS.get(chr(op))
        if params is None:
            self.events.note(f"unknown FS {op:02x}")
            return 2
        if self._need(buf, i, 2 + params):
            return NEED_MORE
        if op == ord("P"):
            self.events.note(f"present {buf[i + 2 : i + 6].hex(' ')}")
        return 2 + params

    def _dle(self, buf: bytes, i: int) -> int:
        """Real-time commands were split off at reception; skip any other DLE x n."""
        if self._need(buf, i, 3):
            return NEED_MORE
        return 3


# --- the device ------------------------------------------------------------------------


@dataclass
class SimState:
    faults: set[Fault] = field(default_factory=set)
    slow_ms: float = 0.0
    ticket_in_presenter: bool = False


class PrinterSimulator:
    """The simulated printer: a pty, a reader thread (reception, real-time replies) and a
    printer thread (interprets held data at the configured speed)."""

    def __init__(
        self,
        config: SimConfig | None = None,
        *,
        link: Path | None = None,
        receipts_dir: Path | None = None,
        out: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or SimConfig()
        self.link = link
        self.receipts_dir = receipts_dir
        self._out = out
        self.state = SimState()
        self.receipts: list[str] = []
        self.events: list[str] = []
        self._pending = bytearray()
        self._busy = False
        self._generation = 0  # bumped by DLE ENQ 2 so a chunk in flight is dropped too
        self._replies_to_lose = 0  # status replies lost on the line (noise, a USB hiccup)
        self._cond = threading.Condition()
        self._interpreting = threading.Lock()  # printer thread vs DLE ENQ 2 from the reader
        self._stop = threading.Event()
        self._splitter = RealtimeSplitter()
        self._interpreter = EscposInterpreter(
            self.config, InterpreterEvents(receipt=self._on_receipt, note=self._emit)
        )
        self._pty: PseudoTerminal | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def path(self) -> str:
        if self._pty is None:
            raise RuntimeError("simulator not started")
        return self._pty.path

    def start(self) -> PrinterSimulator:
        if self.receipts_dir is not None:
            self.receipts_dir.mkdir(parents=True, exist_ok=True)
        self._pty = open_pty(self.link)
        for target, name in ((self._reader, "reader"), (self._printer, "printer")):
            thread = threading.Thread(target=target, name=f"sim-printer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._emit(
            f"ready {self.link or self._pty.path} ({self.config.name}, "
            f"{self.config.columns} columns, ESC t {self.config.codepage_number})"
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = []
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    def __enter__(self) -> PrinterSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control -----------------------------------------------------------------------

    @property
    def faults(self) -> frozenset[Fault]:
        with self._cond:
            return frozenset(self.state.faults)

    @property
    def printing(self) -> bool:
        with self._cond:
            return self._busy or bool(self._pending)

    def set_fault(self, fault: Fault) -> None:
        with self._cond:
            self.state.faults.add(fault)
            self._cond.notify_all()
        self._emit(f"fault {fault.value}")

    def clear(self) -> None:
        with self._cond:
            self.state.faults.clear()
            self._cond.notify_all()
        self._emit("clear")

    def set_slow(self, ms_per_byte: float) -> None:
        if ms_per_byte < 0:
            raise ValueError("slow must be >= 0 ms per byte")
        with self._cond:
            self.state.slow_ms = ms_per_byte
        self._emit(f"slow {ms_per_byte:g} ms/byte")

    def lose_replies(self, count: int) -> None:
        """The next `count` status replies never reach the host, as on a noisy line."""
        if count < 0:
            raise ValueError("lose must be >= 0 replies")
        with self._cond:
            self._replies_to_lose = count
        self._emit(f"losing the next {count} status replies")

    def take_ticket(self) -> None:
        with self._cond:
            self.state.ticket_in_presenter = False
        self._emit("ticket taken")

    def status_line(self) -> str:
        with self._cond:
            faults = ",".join(sorted(f.value for f in self.state.faults)) or "none"
            return (
                f"status faults={faults} receipts={len(self.receipts)} "
                f"waiting_bytes={len(self._pending)} slow={self.state.slow_ms:g}ms "
                f"ticket_in_presenter={self.state.ticket_in_presenter}"
            )

    def command(self, line: str) -> bool:
        """Apply one stdin command; False means quit. Unknown input is reported, not fatal."""
        words = line.split()
        if not words:
            return True
        word = words[0].lower()
        try:
            if word == "quit":
                return False
            if word in ("ok", "clear"):
                self.clear()
            elif word == "slow":
                self.set_slow(float(words[1]) if len(words) > 1 else 0.0)
            elif word == "status":
                self._emit(self.status_line())
            elif word == "take":
                self.take_ticket()
            elif word == "lose":
                self.lose_replies(int(words[1]) if len(words) > 1 else 1)
            elif word == "help":
                self._emit(COMMAND_HELP)
            else:
                self.set_fault(Fault(word))
        except ValueError:
            self._emit(f"error: cannot understand {line.strip()!r}; type help")
        return True

    def wait_for_receipts(self, count: int, timeout: float) -> bool:
        """Block until at least `count` receipts exist (or the timeout passes)."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.receipts) >= count, timeout)

    def wait_for_event(self, text: str, timeout: float) -> bool:
        """Block until an event line starting with `text` has been emitted."""
        with self._cond:
            return self._cond.wait_for(
                lambda: any(e.startswith(text) for e in self.events), timeout
            )

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout)

    # -- internals ---------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        with self._cond:
            self.events.append(text)
            self._cond.notify_all()
        if self._out is not None:
            self._out(text)

    def _on_receipt(self, text: str) -> None:
        """Save first, then publish: whoever waits for receipt N may read its file."""
        number = len(self.receipts) + 1  # only the printer thread appends
        where = "kept"
        if self.receipts_dir is not None:
            path = self.receipts_dir / f"receipt_{number:04d}.txt"
            path.write_text(text, encoding="utf-8")
            where = f"saved {path}"
        with self._cond:
            self.receipts.append(text)
            self.state.ticket_in_presenter = True
            self._cond.notify_all()
        self._emit(f"receipt {number} {where}")

    def _reply(self, request: Realtime) -> None:
        assert self._pty is not None
        with self._cond:
            faults = frozenset(self.state.faults)
            printing = self._busy or self._can_print()
            ticket = self.state.ticket_in_presenter
        if Fault.OFFLINE in faults:
            return
        if request.function == ENQ:
            if request.n == Recovery.CLEAR:
                with self._cond:
                    self._pending.clear()
                    self._generation += 1
                    self._cond.notify_all()
                with self._interpreting:
                    self._interpreter.abandon()
                self._emit("buffer cleared (DLE ENQ 2)")
            return
        with self._cond:
            lose = self._replies_to_lose > 0
            if lose:
                self._replies_to_lose -= 1
        if lose:
            self._emit(f"status reply to DLE EOT {request.n} lost")
            return
        if request.n == StatusRequest.CUSTOM_FULL:
            if not self.config.full_status:
                return  # a printer without full status ignores it
            reply = full_status_reply(faults, printing=printing, ticket_in_presenter=ticket)
        else:
            reply = bytes([realtime_reply(request.n, faults)])
        os.write(self._pty.master_fd, reply)

    def _reader(self) -> None:
        assert self._pty is not None
        fd = self._pty.master_fd
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], SELECT_TIMEOUT_S)
                if not ready:
                    continue
                data = os.read(fd, READ_SIZE)
            except OSError:
                if self._stop.is_set():
                    return
                continue
            for item in self._splitter.feed(data):
                if isinstance(item, Realtime):
                    try:
                        self._reply(item)
                    except OSError:
                        pass
                    continue
                with self._cond:
                    if Fault.OFFLINE in self.state.faults:
                        continue  # nobody is listening
                    self._pending += item
                    self._cond.notify_all()

    def _can_print(self) -> bool:
        return bool(self._pending) and not (self.state.faults & HOLDING_FAULTS)

    def _printer(self) -> None:
        """Interpret held data. With `slow`, byte k of a run of printing is done at
        start + (k + 1) x slow on an absolute schedule: a late wake-up or the time spent
        interpreting is caught up on the next step instead of adding up, so a receipt
        takes its bytes x slow (a line at 10000 / slow baud), not more."""
        due = 0.0  # when the bytes taken so far are printed (time.monotonic)
        while not self._stop.is_set():
            with self._cond:
                if not self._can_print():
                    due = 0.0  # idle or held by a fault: the next byte starts a new run
                self._cond.wait_for(lambda: self._stop.is_set() or self._can_print())
                if self._stop.is_set():
                    return
                per_byte_s = self.state.slow_ms / MS
                size = PRINT_CHUNK
                if per_byte_s:
                    size = max(1, min(PRINT_CHUNK, int(PACE_STEP_S / per_byte_s)))
                chunk = bytes(self._pending[:size])
                del self._pending[:size]
                self._busy = True
                generation = self._generation
            if per_byte_s:
                now = time.monotonic()
                due = (due or now) + len(chunk) * per_byte_s
                if due > now:
                    self._stop.wait(due - now)
            else:
                due = 0.0
            try:
                with self._interpreting:
                    if generation == self._generation:
                        self._interpreter.feed(chunk)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


# --- command line ----------------------------------------------------------------------


def _load_config(args: argparse.Namespace) -> SimConfig:
    config = SimConfig()
    if args.profile:
        candidate = Path(args.profile)
        if candidate.suffix == ".toml" or candidate.exists():
            profile = load_profile(candidate)
        else:
            profiles = load_profiles(DEFAULT_DIR)
            if args.profile not in profiles:
                names = ", ".join(n for n, p in profiles.items() if p.kind == "printer")
                raise ProfileError(f"no profile named {args.profile!r}; printers: {names}")
            profile = profiles[args.profile]
        config = SimConfig.from_profile(profile)
    return SimConfig(
        name=config.name,
        columns=args.columns or config.columns,
        codepage_number=(config.codepage_number if args.codepage is None else args.codepage),
        full_status=config.full_status if args.full_status is None else args.full_status,
        code_pages=tuple(args.code_page),
    )


def _code_page(text: str) -> tuple[int, str]:
    """`N=CODEC` for --code-page."""
    number, sep, codec = text.partition("=")
    try:
        if not sep:
            raise ValueError
        value = int(number)
        if not 0 <= value <= 0xFF:
            raise ValueError
        codecs.lookup(codec)
    except (ValueError, LookupError):
        raise argparse.ArgumentTypeError(
            f"expected N=CODEC with N in 0..255 and a Python codec (e.g. 28=cp855), got {text!r}"
        ) from None
    return value, codec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kiosk sim printer",
        description="ESC/POS receipt-printer simulator on a pseudo-terminal.",
        epilog=COMMAND_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--link", type=Path, metavar="PATH", help="make PATH a symlink to the pty")
    parser.add_argument(
        "--receipts", type=Path, metavar="DIR", help="save each receipt as a numbered file in DIR"
    )
    parser.add_argument(
        "--profile",
        help="firmware profile name or .toml path to imitate (default: 42 columns, "
        "ESC t 17, answers full status)",
    )
    parser.add_argument("--columns", type=int, help="paper width in columns")
    parser.add_argument("--codepage", type=int, help="the ESC t number that selects CP866")
    parser.add_argument(
        "--code-page",
        dest="code_page",
        type=_code_page,
        action="append",
        default=[],
        metavar="N=CODEC",
        help="a further ESC t table of the model, e.g. 28=cp855 (repeatable)",
    )
    parser.add_argument(
        "--full-status",
        dest="full_status",
        action="store_true",
        default=None,
        help="answer Custom full status (10 04 14)",
    )
    parser.add_argument(
        "--no-full-status",
        dest="full_status",
        action="store_false",
        help="ignore 10 04 14 like an Epson",
    )
    parser.add_argument(
        "--slow",
        type=float,
        default=0.0,
        help="ms per byte when printing (10000 / baud emulates a serial line)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _load_config(args)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def say(text: str) -> None:
        print(text, flush=True)

    sim = PrinterSimulator(config, link=args.link, receipts_dir=args.receipts, out=say)
    done = threading.Event()
    with stop_on_sigterm():
        try:
            sim.start()
            if args.slow:
                sim.set_slow(args.slow)
            for line in sys.stdin:
                if not sim.command(line):
                    done.set()
                    break
            wait_for_stop(done)  # stdin closed (in the background): until a signal
        except (KeyboardInterrupt, Terminated):
            pass
        finally:
            sim.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
