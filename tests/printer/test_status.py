"""Status replies decoded bit by bit (DLE EOT 1-4 and Custom full status)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.escpos.status import (
    ErrorCause,
    FullStatus,
    OfflineCause,
    PaperSensor,
    PrinterFlags,
    StatusError,
    decode_full,
    decode_full_status,
    decode_realtime,
)
from drivers.printer import PrinterStatus as S

H = bytes.fromhex


@pytest.mark.parametrize(
    ("byte", "expected"),
    [
        (0x12, PrinterFlags()),
        (0x16, PrinterFlags(drawer_high=True)),  # seen in the wild (node-escpos #288)
        (0x1A, PrinterFlags(offline=True)),
        (0x32, PrinterFlags(waiting_recovery=True)),
        (0x52, PrinterFlags(feed_pressed=True)),
        (0x7E, PrinterFlags(True, True, True, True)),
    ],
)
def test_dle_eot_1(byte: int, expected: PrinterFlags) -> None:
    assert PrinterFlags.decode(byte) == expected


@pytest.mark.parametrize(
    ("byte", "expected"),
    [
        (0x12, OfflineCause()),
        (0x16, OfflineCause(cover_open=True)),
        (0x1A, OfflineCause(feeding=True)),
        (0x32, OfflineCause(paper_end_stop=True)),
        (0x52, OfflineCause(error=True)),
    ],
)
def test_dle_eot_2(byte: int, expected: OfflineCause) -> None:
    assert OfflineCause.decode(byte) == expected


@pytest.mark.parametrize(
    ("byte", "expected"),
    [
        (0x12, ErrorCause()),
        (0x16, ErrorCause(mechanical=True)),
        (0x1A, ErrorCause(autocutter=True)),
        (0x32, ErrorCause(unrecoverable=True)),
        (0x52, ErrorCause(auto_recoverable=True)),
    ],
)
def test_dle_eot_3(byte: int, expected: ErrorCause) -> None:
    assert ErrorCause.decode(byte) == expected


@pytest.mark.parametrize(
    ("byte", "expected"),
    [
        (0x12, PaperSensor()),
        (0x1E, PaperSensor(near_end=True)),
        (0x16, PaperSensor(near_end=True)),  # either sensor bit counts
        (0x72, PaperSensor(paper_end=True)),  # seen in the wild (python-escpos #143)
        (0x32, PaperSensor(paper_end=True)),
        (0x7E, PaperSensor(near_end=True, paper_end=True)),
    ],
)
def test_dle_eot_4(byte: int, expected: PaperSensor) -> None:
    assert PaperSensor.decode(byte) == expected


@pytest.mark.parametrize(
    ("replies", "status", "detail"),
    [
        ("12 12 12 12", S.OK, None),
        ("16 12 12 12", S.OK, "drawer pin high"),
        ("12 12 12 1e", S.PAPER_NEAR_END, "paper near end"),
        ("1a 32 12 72", S.PAPER_OUT, "paper end"),
        ("12 12 12 72", S.PAPER_OUT, "paper end"),
        ("1a 16 12 12", S.COVER_OPEN, "cover open"),
        ("1a 36 12 72", S.COVER_OPEN, "paper end"),  # cover wins, paper still reported
        ("1a 52 1a 12", S.CUTTER_ERROR, "autocutter error"),
        ("1a 52 32 12", S.OFFLINE, "unrecoverable error"),
        ("1a 52 16 1e", S.OFFLINE, "mechanical error"),
        ("1a 12 12 12", S.OFFLINE, "offline"),
        ("1a 1a 12 12", S.OFFLINE, "paper fed by FEED button"),
        ("12 12 52 12", S.OFFLINE, "auto-recoverable error (e.g. head temperature)"),
    ],
)
def test_realtime_classification(replies: str, status: S, detail: str | None) -> None:
    report = decode_realtime(H(replies))
    assert report.status is status
    assert report.raw == H(replies)
    if detail:
        assert detail in report.details
    else:
        assert report.details == ()


@pytest.mark.parametrize(
    ("byte", "message"),
    [
        (0x13, "XOFF"),
        (0x11, "XON"),
        (0x00, "fixed bits"),
        (0xFF, "fixed bits"),
        (0x92, "fixed bits"),  # bit 7 set
        (0x10, "fixed bits"),  # bit 1 clear
    ],
)
def test_malformed_realtime_byte_is_a_clear_error(byte: int, message: str) -> None:
    with pytest.raises(StatusError, match=message):
        PrinterFlags.decode(byte)


@pytest.mark.parametrize("replies", ["", "12", "12 12 12", "12 12 12 12 12"])
def test_wrong_number_of_realtime_replies(replies: str) -> None:
    with pytest.raises(StatusError, match="expected 4"):
        decode_realtime(H(replies))


# Custom full status: 10 0F P U R X, one row per bit. Written out from the reference sheet
# on purpose, not imported from drivers/escpos/status.py: an independent expectation.
FULL_BITS = [
    (2, 0x01, "paper_absent"),
    (2, 0x04, "near_end"),
    (2, 0x20, "ticket_in_presenter"),
    (2, 0x40, "virtual_paper_end"),
    (2, 0x80, "notch"),
    (3, 0x01, "head_up"),
    (3, 0x02, "cover_open"),
    (3, 0x04, "spooling"),
    (3, 0x08, "motor_on"),
    (3, 0x20, "lf_key"),
    (3, 0x40, "ff_key"),
    (4, 0x01, "head_temperature"),
    (4, 0x02, "com_error"),
    (4, 0x08, "voltage"),
    (4, 0x20, "not_acknowledged"),
    (4, 0x40, "paper_jam"),
    (4, 0x80, "notch_search_error"),
    (5, 0x01, "cutter_error"),
    (5, 0x02, "cutter_cover_open"),
    (5, 0x04, "ram_error"),
    (5, 0x08, "eeprom_error"),
    (5, 0x80, "presenter_error"),
]


@pytest.mark.parametrize(("index", "mask", "name"), FULL_BITS)
def test_full_status_bit(index: int, mask: int, name: str) -> None:
    reply = bytearray(H("10 0f 00 00 00 00"))
    reply[index] = mask
    assert decode_full_status(bytes(reply)) == FullStatus(**{name: True})


@pytest.mark.parametrize(
    ("reply", "status", "printing", "ticket"),
    [
        ("10 0f 00 00 00 00", S.OK, False, False),
        ("10 0f 04 00 00 00", S.PAPER_NEAR_END, False, False),
        ("10 0f 40 00 00 00", S.PAPER_NEAR_END, False, False),
        ("10 0f 05 00 00 00", S.PAPER_OUT, False, False),
        ("10 0f 00 03 00 00", S.COVER_OPEN, False, False),
        ("10 0f 00 01 00 00", S.COVER_OPEN, False, False),
        ("10 0f 00 00 00 02", S.COVER_OPEN, False, False),
        ("10 0f 00 00 00 01", S.CUTTER_ERROR, False, False),
        ("10 0f 00 00 40 00", S.OFFLINE, False, False),  # paper jam
        ("10 0f 00 00 00 80", S.OFFLINE, False, False),  # presenter error
        ("10 0f 00 00 01 00", S.OFFLINE, False, False),  # head temperature
        ("10 0f 00 00 02 00", S.OK, False, False),  # serial error: reported, not blocking
        ("10 0f 20 0c 00 00", S.OK, True, True),
        ("10 0f 25 0f 00 01", S.COVER_OPEN, True, True),
    ],
)
def test_full_status_classification(reply: str, status: S, printing: bool, ticket: bool) -> None:
    report = decode_full(H(reply))
    assert (report.status, report.printing, report.ticket_in_presenter) == (
        status,
        printing,
        ticket,
    )
    assert report.raw == H(reply)


def test_full_status_details_are_words() -> None:
    report = decode_full(H("10 0f 05 02 40 01"))
    assert report.describe() == (
        "cover open (paper end, paper near end, cover open, paper jam, autocutter error)"
    )


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "10",
        "10 0f 00 00 00",
        "10 0f 00 00 00 00 00",
        "12 0f 00 00 00 00",
        "10 0e 00 00 00 00",
        "12 12 12 12 12 12",
    ],
)
def test_malformed_full_status_is_a_clear_error(reply: str) -> None:
    with pytest.raises(StatusError, match="full status"):
        decode_full(H(reply))


@given(st.binary(max_size=12))
def test_full_status_decoder_never_crashes(data: bytes) -> None:
    try:
        report = decode_full(data)
    except StatusError:
        return
    assert isinstance(report.status, S)


@given(st.binary(min_size=4, max_size=4))
def test_realtime_decoder_never_crashes(data: bytes) -> None:
    try:
        report = decode_realtime(data)
    except StatusError as exc:
        assert "DLE EOT" in str(exc)
        return
    assert isinstance(report.status, S)
    assert all(b & 0x93 == 0x12 for b in data)
