"""Every ESC/POS command's bytes, against docs/protocols/escpos.md (byte tables)."""

from __future__ import annotations

import pytest

from drivers.escpos import commands as c
from drivers.printer import Align

H = bytes.fromhex


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (c.initialize(), H("1b 40")),
        (c.select_code_page(17), H("1b 74 11")),
        (c.select_code_page(7), H("1b 74 07")),
        (c.select_international(), H("1b 52 00")),
        (c.enable_peripheral(), H("1b 3d 01")),
        (c.bold(True), H("1b 45 01")),
        (c.bold(False), H("1b 45 00")),
        (c.print_mode(c.PrintMode.NORMAL), H("1b 21 00")),
        (
            c.print_mode(c.PrintMode.BOLD | c.PrintMode.DOUBLE_HEIGHT | c.PrintMode.DOUBLE_WIDTH),
            H("1b 21 38"),
        ),
        (c.print_mode(c.PrintMode.FONT_B | c.PrintMode.UNDERLINE), H("1b 21 81")),
        (c.character_size(1, 1), H("1d 21 00")),
        (c.character_size(2, 2), H("1d 21 11")),
        (c.character_size(8, 1), H("1d 21 70")),
        (c.character_size(1, 8), H("1d 21 07")),
        (c.double_size(True), H("1d 21 11")),
        (c.double_size(False), H("1d 21 00")),
        (c.align(Align.LEFT), H("1b 61 00")),
        (c.align(Align.CENTER), H("1b 61 01")),
        (c.align(Align.RIGHT), H("1b 61 02")),
        (c.line_feed(), H("0a")),
        (c.feed_lines(0), H("1b 64 00")),
        (c.feed_lines(4), H("1b 64 04")),
        (c.feed_lines(255), H("1b 64 ff")),
        (c.cut(c.CutMode.FULL), H("1d 56 00")),
        (c.cut(c.CutMode.PARTIAL), H("1d 56 01")),
        (c.cut(c.CutMode.FEED_FULL, 3), H("1d 56 41 03")),
        (c.cut(c.CutMode.FEED_PARTIAL, 0), H("1d 56 42 00")),
        (c.cut(c.CutMode.FEED_PARTIAL, 10), H("1d 56 42 0a")),
        (c.cut(c.CutMode.ESC_I), H("1b 69")),
        (c.cut(c.CutMode.ESC_M), H("1b 6d")),
        # QR, GS ( k (python-escpos native sequence, escpos.md "QR code")
        (c.qr_model(), H("1d 28 6b 04 00 31 41 32 00")),
        (c.qr_model(c.QrModel.MODEL_1), H("1d 28 6b 04 00 31 41 31 00")),
        (c.qr_module_size(6), H("1d 28 6b 03 00 31 43 06")),
        (c.qr_error_level(c.QrErrorLevel.L), H("1d 28 6b 03 00 31 45 30")),
        (c.qr_error_level(c.QrErrorLevel.H), H("1d 28 6b 03 00 31 45 33")),
        (c.qr_store(b"AB"), H("1d 28 6b 05 00 31 50 30 41 42")),
        (c.qr_print(), H("1d 28 6b 03 00 31 51 30")),
        # 1D barcodes
        (c.barcode_height(64), H("1d 68 40")),
        (c.barcode_width(3), H("1d 77 03")),
        (c.barcode_hri(c.HriPosition.BELOW), H("1d 48 02")),
        (c.barcode(c.BarcodeSystem.EAN13, b"4006381333931"), H("1d 6b 43 0d") + b"4006381333931"),
        (c.code128("N123"), H("1d 6b 49 06 7b 42") + b"N123"),
        # status and recovery
        (c.status_request(c.StatusRequest.PRINTER), H("10 04 01")),
        (c.status_request(c.StatusRequest.OFFLINE_CAUSE), H("10 04 02")),
        (c.status_request(c.StatusRequest.ERROR_CAUSE), H("10 04 03")),
        (c.status_request(c.StatusRequest.PAPER), H("10 04 04")),
        (c.status_request(c.StatusRequest.CUSTOM_FULL), H("10 04 14")),
        (c.realtime_recover(c.Recovery.RESTART), H("10 05 01")),
        (c.realtime_recover(c.Recovery.CLEAR), H("10 05 02")),
        # presenters (escpos.md "Presenters")
        (c.custom_present(50, c.PresenterAction.RETRACT, 30), H("1c 50 0a 01 52 1e")),
        (c.custom_present(52, c.PresenterAction.EJECT, 0, blink=False), H("1c 50 0b 00 45 00")),
        (c.custom_gs_e(c.CustomPresenterFunction.PRESENT, 20), H("1d 65 03 14")),
        (c.custom_gs_e(c.CustomPresenterFunction.RETRACT), H("1d 65 02")),
        (c.custom_gs_e(c.CustomPresenterFunction.EJECT), H("1d 65 05")),
        (c.citizen_retract_now(), H("1d 52 30")),
        (c.citizen_auto_retract(5), H("1d 52 31 05")),
    ],
)
def test_command_bytes(built: bytes, expected: bytes) -> None:
    assert built == expected


def test_qr_sequence_matches_python_escpos_native() -> None:
    assert c.qr(b"X", 6, c.QrErrorLevel.L) == H(
        "1d 28 6b 04 00 31 41 32 00"
        "1d 28 6b 03 00 31 43 06"
        "1d 28 6b 03 00 31 45 30"
        "1d 28 6b 04 00 31 50 30 58"
        "1d 28 6b 03 00 31 51 30"
    )


def test_qr_store_length_uses_both_bytes() -> None:
    data = b"x" * 300
    frame = c.qr_store(data)
    assert frame[3] + frame[4] * 256 == len(data) + 3
    assert frame[:3] == H("1d 28 6b") and frame[5:8] == H("31 50 30")


@pytest.mark.parametrize(
    "call",
    [
        lambda: c.select_code_page(256),
        lambda: c.select_code_page(-1),
        lambda: c.character_size(0, 1),
        lambda: c.character_size(9, 1),
        lambda: c.feed_lines(256),
        lambda: c.cut(c.CutMode.FEED_FULL, 300),
        lambda: c.qr_module_size(0),
        lambda: c.qr_module_size(25),
        lambda: c.qr_store(b""),
        lambda: c.qr_store(b"x" * (c.QR_MAX_DATA + 1)),
        lambda: c.barcode_width(1),
        lambda: c.barcode_height(0),
        lambda: c.barcode(c.BarcodeSystem.CODE39, b""),
        lambda: c.barcode(c.BarcodeSystem.CODE39, b"A\x1bB"),
        lambda: c.citizen_auto_retract(10),
        lambda: c.custom_present(50, c.PresenterAction.EJECT, 256),
        lambda: c.select_code_page(True),  # a bool is not a byte
    ],
)
def test_out_of_range_parameters_are_refused(call) -> None:
    with pytest.raises(ValueError):
        call()
