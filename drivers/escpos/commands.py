"""ESC/POS command table: every byte sequence the driver sends, as small pure functions.

What each command does, and how sure we are of it, is in docs/protocols/escpos.md; the
section is named next to each group. Values out of a command's range raise ValueError,
because a wrong parameter byte silently turns into text or another command on paper.
"""

from __future__ import annotations

import enum

from drivers.printer import Align

# Control bytes.
LF = 0x0A
DLE = 0x10
EOT = 0x04
ENQ = 0x05
ESC = 0x1B
FS = 0x1C
GS = 0x1D

BYTE_MAX = 0xFF


def _byte(name: str, value: int, low: int = 0, high: int = BYTE_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, got {value!r}")
    return value


# --- escpos.md, "Job layout" --------------------------------------------------------

INIT = bytes([ESC, ord("@")])  # ESC @: clear buffer, power-on modes (also resets ESC t)
INTL_USA = 0  # ESC R 0: keep the 12 national ASCII glyphs as US ASCII
PERIPHERAL_ENABLE = 1  # ESC = 1: some serial kiosk printers ignore data until enabled


def initialize() -> bytes:
    return INIT


def select_code_page(number: int) -> bytes:
    """ESC t n; n for CP866 differs per model (17 Epson/Custom, 7 Citizen), see profiles."""
    return bytes([ESC, ord("t"), _byte("code page number", number)])


def select_international(charset: int = INTL_USA) -> bytes:
    return bytes([ESC, ord("R"), _byte("international character set", charset, 0, 0x0F)])


def enable_peripheral(value: int = PERIPHERAL_ENABLE) -> bytes:
    return bytes([ESC, ord("="), _byte("peripheral", value)])


def bold(on: bool) -> bytes:
    """ESC E n."""
    return bytes([ESC, ord("E"), 1 if on else 0])


class PrintMode(enum.IntFlag):
    """ESC ! n bits."""

    NORMAL = 0x00
    FONT_B = 0x01
    BOLD = 0x08
    DOUBLE_HEIGHT = 0x10
    DOUBLE_WIDTH = 0x20
    UNDERLINE = 0x80


def print_mode(mode: PrintMode) -> bytes:
    return bytes([ESC, ord("!"), int(mode) & BYTE_MAX])


SIZE_MIN = 1
SIZE_MAX = 8


def character_size(width: int = 1, height: int = 1) -> bytes:
    """GS ! n: high nibble width-1, low nibble height-1 (1..8 times each)."""
    w = _byte("width", width, SIZE_MIN, SIZE_MAX) - 1
    h = _byte("height", height, SIZE_MIN, SIZE_MAX) - 1
    return bytes([GS, ord("!"), (w << 4) | h])


DOUBLE_SIZE = 2


def double_size(on: bool) -> bytes:
    size = DOUBLE_SIZE if on else 1
    return character_size(size, size)


ALIGN_CODES: dict[Align, int] = {Align.LEFT: 0, Align.CENTER: 1, Align.RIGHT: 2}


def align(where: Align) -> bytes:
    """ESC a n."""
    return bytes([ESC, ord("a"), ALIGN_CODES[where]])


def line_feed() -> bytes:
    return bytes([LF])


def feed_lines(lines: int) -> bytes:
    """ESC d n: print the buffer and feed n lines (n = 0..255)."""
    return bytes([ESC, ord("d"), _byte("feed lines", lines)])


# --- escpos.md, "Cutting" -----------------------------------------------------------


class CutMode(enum.Enum):
    FULL = "full"  # GS V 0
    PARTIAL = "partial"  # GS V 1
    FEED_FULL = "feed_full"  # GS V 65 n: feed to the cutter + n, full cut
    FEED_PARTIAL = "feed_partial"  # GS V 66 n: feed + partial (python-escpos default)
    ESC_I = "esc_i"  # ESC i: Custom / e-kiosk generic total cut
    ESC_M = "esc_m"  # ESC m: older Epson partial cut


CUT_FUNCTION_A: dict[CutMode, int] = {CutMode.FULL: 0, CutMode.PARTIAL: 1}
CUT_FUNCTION_B: dict[CutMode, int] = {CutMode.FEED_FULL: 65, CutMode.FEED_PARTIAL: 66}


def cut(mode: CutMode, feed: int = 0) -> bytes:
    """The cut command for a profile's cut mode; `feed` only matters for GS V 65/66."""
    if mode in CUT_FUNCTION_A:
        return bytes([GS, ord("V"), CUT_FUNCTION_A[mode]])
    if mode in CUT_FUNCTION_B:
        return bytes([GS, ord("V"), CUT_FUNCTION_B[mode], _byte("cut feed", feed)])
    if mode is CutMode.ESC_I:
        return bytes([ESC, ord("i")])
    return bytes([ESC, ord("m")])


# --- escpos.md, "QR code": GS ( k with cn = 49 -------------------------------------------

QR_CN = 0x31
QR_FN_MODEL = 0x41  # function 165
QR_FN_SIZE = 0x43  # function 167
QR_FN_ERROR = 0x45  # function 169
QR_FN_STORE = 0x50  # function 180
QR_FN_PRINT = 0x51  # function 181
QR_M = 0x30
QR_MAX_DATA = 7089
QR_MODULE_MIN = 1
QR_MODULE_MAX = 24  # Epson 1..16, Custom VKP80III 2..24


class QrModel(enum.IntEnum):
    MODEL_1 = 49
    MODEL_2 = 50
    MICRO = 51


class QrErrorLevel(enum.IntEnum):
    L = 48
    M = 49
    Q = 50
    H = 51


def _qr_function(fn: int, params: bytes) -> bytes:
    length = len(params) + 2  # cn and fn count in pL/pH
    return bytes([GS, ord("("), ord("k"), length & BYTE_MAX, length >> 8, QR_CN, fn]) + params


def qr_model(model: QrModel = QrModel.MODEL_2) -> bytes:
    return _qr_function(QR_FN_MODEL, bytes([int(model), 0]))


def qr_module_size(dots: int) -> bytes:
    return _qr_function(
        QR_FN_SIZE, bytes([_byte("QR module size", dots, QR_MODULE_MIN, QR_MODULE_MAX)])
    )


def qr_error_level(level: QrErrorLevel) -> bytes:
    return _qr_function(QR_FN_ERROR, bytes([int(level)]))


def qr_store(data: bytes) -> bytes:
    if not data or len(data) > QR_MAX_DATA:
        raise ValueError(f"QR data must be 1..{QR_MAX_DATA} bytes, got {len(data)}")
    return _qr_function(QR_FN_STORE, bytes([QR_M]) + data)


def qr_print() -> bytes:
    return _qr_function(QR_FN_PRINT, bytes([QR_M]))


def qr(
    data: bytes, module_size: int, level: QrErrorLevel, model: QrModel = QrModel.MODEL_2
) -> bytes:
    """The full native QR sequence: model, size, error level, store, print."""
    return (
        qr_model(model)
        + qr_module_size(module_size)
        + qr_error_level(level)
        + qr_store(data)
        + qr_print()
    )


# --- 1D barcodes, GS k function B (not printed on receipts today) -------------------------


class BarcodeSystem(enum.IntEnum):
    UPC_A = 65
    UPC_E = 66
    EAN13 = 67
    EAN8 = 68
    CODE39 = 69
    ITF = 70
    CODABAR = 71
    CODE93 = 72
    CODE128 = 73


class HriPosition(enum.IntEnum):
    NONE = 0
    ABOVE = 1
    BELOW = 2
    BOTH = 3


BARCODE_WIDTH_MIN = 2
BARCODE_WIDTH_MAX = 6
CODE128_SET_B = b"{B"


def barcode_height(dots: int) -> bytes:
    return bytes([GS, ord("h"), _byte("barcode height", dots, 1)])


def barcode_width(module: int) -> bytes:
    return bytes(
        [GS, ord("w"), _byte("barcode width", module, BARCODE_WIDTH_MIN, BARCODE_WIDTH_MAX)]
    )


def barcode_hri(position: HriPosition) -> bytes:
    return bytes([GS, ord("H"), int(position)])


def barcode(system: BarcodeSystem, data: bytes) -> bytes:
    """GS k m n d1..dn (function B: length-prefixed, no NUL terminator)."""
    if not data or len(data) > BYTE_MAX:
        raise ValueError(f"barcode data must be 1..{BYTE_MAX} bytes, got {len(data)}")
    if any(b < 0x20 or b > 0x7E for b in data):
        raise ValueError("barcode data must be printable ASCII")
    return bytes([GS, ord("k"), int(system), len(data)]) + data


def code128(text: str) -> bytes:
    """CODE128 in code set B (what e-kiosk sends): `{B` + ASCII text."""
    return barcode(BarcodeSystem.CODE128, CODE128_SET_B + text.encode("ascii"))


# --- escpos.md, "Status": real-time, answered even when the printer is busy or offline --


class StatusRequest(enum.IntEnum):
    """DLE EOT n."""

    PRINTER = 1
    OFFLINE_CAUSE = 2
    ERROR_CAUSE = 3
    PAPER = 4
    CUSTOM_FULL = 20  # Custom "FULL STATUS": 6-byte reply 10 0F P U R X


def status_request(request: StatusRequest) -> bytes:
    return bytes([DLE, EOT, int(request)])


class Recovery(enum.IntEnum):
    """DLE ENQ n."""

    RESTART = 1  # recover and restart from the line in error
    CLEAR = 2  # recover and clear the receive and print buffers


def realtime_recover(mode: Recovery) -> bytes:
    return bytes([DLE, ENQ, int(mode)])


# --- escpos.md, "Presenters": presenters / ejectors -----------------------------------


class PresenterAction(enum.IntEnum):
    """Custom VKP80III FS P `A`: what happens after the timeout."""

    EJECT = 0x45  # 'E'
    RETRACT = 0x52  # 'R'


PRESENT_STEP_MM = 5  # FS P length unit on the VKP80III


def custom_present(
    length_mm: int, action: PresenterAction, timeout_s: int, blink: bool = True
) -> bytes:
    """FS P L B A T (Custom VKP80III): present L*5 mm, then eject/retract after T s
    (T = 0 holds the ticket until the next one)."""
    steps = -(-_byte("present length", length_mm, 0, BYTE_MAX * PRESENT_STEP_MM) // PRESENT_STEP_MM)
    return bytes(
        [FS, ord("P"), steps, 1 if blink else 0, int(action), _byte("present timeout", timeout_s)]
    )


class CustomPresenterFunction(enum.IntEnum):
    """GS e n (Custom VKP80 / KPM family)."""

    RETRACT = 2
    PRESENT = 3  # followed by m steps
    EJECT = 5


def custom_gs_e(function: CustomPresenterFunction, steps: int = 0) -> bytes:
    out = bytes([GS, ord("e"), int(function)])
    if function is CustomPresenterFunction.PRESENT:
        out += bytes([_byte("present steps", steps)])
    return out


CITIZEN_RETRACT_MAX_S = 9


def citizen_retract_now() -> bytes:
    """GS R 0 (Citizen PPU-231 / PMU2300III family)."""
    return bytes([GS, ord("R"), ord("0")])


def citizen_auto_retract(seconds: int) -> bytes:
    """GS R 1 n: retract an untaken ticket after n seconds (0..9)."""
    return bytes(
        [GS, ord("R"), ord("1"), _byte("retract seconds", seconds, 0, CITIZEN_RETRACT_MAX_S)]
    )
