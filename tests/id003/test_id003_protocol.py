"""Table tests: CRC, frames (every ID-003 vector of docs/protocols/id003.md), replies in the
context of their request, statuses, currency assignment, masks, event keys, the marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.acceptor import AcceptorStatus, Bill, StackOrigin
from drivers.crc16 import crc16, crc_bytes, frame_crc_ok
from drivers.id003.currency import (
    CurrencyRecord,
    bills_of,
    codes_for,
    decode_currency_table,
    decode_inhibit_mask,
    encode_currency_table,
    encode_inhibit_mask,
)
from drivers.id003.eventkeys import VendEdge
from drivers.id003.frame import Discarded, DiscardReason, Frame, FrameDecoder, build_frame
from drivers.id003.marker import StackMarker
from drivers.id003.protocol import OPERATION_COMMANDS, SETTING_COMMANDS, Command
from drivers.id003.replies import (
    AckReply,
    BootVersionReply,
    CommunicationError,
    CurrencyTable,
    InvalidCommand,
    Malformed,
    SettingEcho,
    StatusReply,
    VersionReply,
    parse_reply,
)
from drivers.id003.settings import Id003Settings
from drivers.id003.states import (
    STATE_TABLE,
    Status,
    abstract_status,
    describe,
    failure_text,
    reject_reason_text,
)
from drivers.profiles import ProfileError, load_profile
from tests.id003.conftest import write_profile

H = bytes.fromhex

# (name, command, data, wire) — every host vector of id003.md ("Frame layout")
HOST_VECTORS = [
    ("STATUS REQUEST", Command.STATUS_REQUEST, b"", "FC 05 11 27 56"),
    ("RESET", Command.RESET, b"", "FC 05 40 2B 15"),
    ("STACK-1", Command.STACK_1, b"", "FC 05 41 A2 04"),
    ("ACK", Command.ACK, b"", "FC 05 50 AA 05"),
    ("RETURN", Command.RETURN, b"", "FC 05 43 B0 27"),
    ("INHIBIT on", Command.INHIBIT, b"\x01", "FC 06 C3 01 8D C7"),
    ("INHIBIT off", Command.INHIBIT, b"\x00", "FC 06 C3 00 04 D6"),
    ("ENABLE all", Command.ENABLE_DISABLE, b"\x00\x00", "FC 07 C0 00 00 2D B5"),
    ("VERSION", Command.VERSION_REQUEST, b"", "FC 05 88 6F 5F"),
    ("CURRENCY ASSIGN", Command.CURRENCY_ASSIGN_REQUEST, b"", "FC 05 8A 7D 7C"),
    ("STACK-2 (computed)", Command.STACK_2, b"", "FC 05 42 39 36"),
    ("HOLD (computed)", Command.HOLD, b"", "FC 05 44 0F 53"),
]

EUR_UNIT_REPLY = (
    "FC 25 8A 61 00 00 00 62 E0 05 00 63 E0 0A 00 64 E0 14 00 65 E0 32 00"
    " 66 E0 0A 01 67 E0 14 01 68 E0 32 01 05 C1"
)
"""id003.md's real-device currency-assign reply ("FC 25 8A 61 00 00 00 62 E0 05 00 … 68 E0 32 01
05 C1"): the elided middle is the only two-significant-digit euro series whose CRC is 05 C1."""


def test_crc_catalogue_check_value() -> None:
    assert crc16(b"123456789") == 0x2189


@pytest.mark.parametrize(("name", "command", "data", "wire"), HOST_VECTORS,
                         ids=[v[0] for v in HOST_VECTORS])
def test_host_frame_vectors(name: str, command: Command, data: bytes, wire: str) -> None:
    assert build_frame(command, data) == H(wire)
    assert frame_crc_ok(H(wire))
    (frame,) = FrameDecoder().feed(H(wire))
    assert isinstance(frame, Frame) and frame.code == command and frame.data == data


def test_real_device_currency_assign_reply() -> None:
    wire = H(EUR_UNIT_REPLY)
    assert wire[1] == len(wire) == 0x25 and frame_crc_ok(wire)
    (frame,) = FrameDecoder().feed(wire)
    assert isinstance(frame, Frame)
    reply = parse_reply(Command.CURRENCY_ASSIGN_REQUEST, frame.payload)
    assert isinstance(reply, CurrencyTable)
    assert [b.amount_minor // 100 for b in bills_of(reply.records)] == [
        5, 10, 20, 50, 100, 200, 500]
    assert {b.currency for b in bills_of(reply.records)} == {"EUR"}
    assert reply.records[0] == CurrencyRecord(0x61, 0, 0, 0)  # unassigned
    # our encoder produces the same bytes for the same table
    table = [CurrencyRecord.for_value(c, v, 224) for c, v in
             zip(range(0x62, 0x69), (5, 10, 20, 50, 100, 200, 500), strict=True)]
    assert build_frame(Command.CURRENCY_ASSIGN_REQUEST, encode_currency_table(table)) == wire


def test_crc_is_low_byte_first_and_whole_frame_residue_is_zero() -> None:
    body = H("FC 05 11")
    assert crc_bytes(body) == H("27 56")
    assert crc16(body + crc_bytes(body)) == 0


def test_build_frame_limits() -> None:
    assert build_frame(0x13, b"\x63")[1] == 6
    assert len(build_frame(0x8A, bytes(250))) == 0xFF
    with pytest.raises(ValueError):
        build_frame(0x8A, bytes(251))
    with pytest.raises(ValueError):
        build_frame(0x100)


# -- the decoder ----------------------------------------------------------------------------


def test_decoder_streams_byte_by_byte() -> None:
    wire = build_frame(0x13, b"\x64") + H("FC 05 11 27 56")
    decoder = FrameDecoder()
    out = []
    for b in wire:
        out.extend(decoder.feed(bytes([b])))
    assert [f.payload for f in out if isinstance(f, Frame)] == [b"\x13\x64", b"\x11"]
    assert decoder.pending == 0


def test_decoder_resyncs_after_garbage_and_stray_sync() -> None:
    noise = H("00 FC 40 55 12")  # a stray SYNC with a long LNG that would swallow the frame
    out = FrameDecoder().feed(noise + build_frame(0x15))
    assert [f.payload for f in out if isinstance(f, Frame)] == [b"\x15"]
    assert all(d.reason is DiscardReason.GARBAGE for d in out if isinstance(d, Discarded))


def test_decoder_reports_bad_crc_then_finds_next_frame() -> None:
    bad = bytearray(build_frame(0x15))
    bad[-1] ^= 0xFF
    out = FrameDecoder().feed(bytes(bad) + build_frame(0x1A))
    assert out[0] == Discarded(bytes(bad), DiscardReason.BAD_CRC)
    assert isinstance(out[1], Frame) and out[1].payload == b"\x1a"


def test_decoder_rejects_impossible_lengths_and_flushes_partials() -> None:
    wire = H("FC 04 FC 00 FC 01")  # LNG below 5 is impossible
    out = FrameDecoder().feed(wire)
    assert all(isinstance(d, Discarded) and d.reason is DiscardReason.GARBAGE for d in out)
    assert b"".join(d.raw for d in out) == wire
    decoder = FrameDecoder()
    assert decoder.feed(H("FC 06 13")) == []
    assert decoder.flush() == [Discarded(H("FC 06 13"), DiscardReason.GARBAGE)]


def test_ccnet_frame_is_not_an_id003_frame() -> None:
    out = FrameDecoder().feed(H("02 03 06 33 DA 81"))  # CCNET POLL
    assert not any(isinstance(i, Frame) for i in out)


# -- replies in the context of their request --------------------------------------------------


@pytest.mark.parametrize("request_cmd", sorted(OPERATION_COMMANDS))
def test_operation_commands_are_answered_with_ack(request_cmd: Command) -> None:
    assert parse_reply(request_cmd, b"\x50") == AckReply()
    assert isinstance(parse_reply(request_cmd, b"\x11"), Malformed)
    assert isinstance(parse_reply(request_cmd, b"\x50\x00"), Malformed)


@pytest.mark.parametrize("request_cmd", list(Command))
def test_invalid_command_and_communication_error_mean_the_same_for_every_request(
    request_cmd: Command,
) -> None:
    assert parse_reply(request_cmd, b"\x4b") == InvalidCommand()
    assert parse_reply(request_cmd, b"\x4a") == CommunicationError()


@pytest.mark.parametrize("request_cmd", sorted(SETTING_COMMANDS))
def test_setting_commands_are_echoed(request_cmd: Command) -> None:
    assert parse_reply(request_cmd, bytes((request_cmd, 1, 0))) == SettingEcho(
        request_cmd, b"\x01\x00")
    assert isinstance(parse_reply(request_cmd, b"\x50"), Malformed)


def test_same_byte_means_different_things_by_request() -> None:
    assert parse_reply(Command.STATUS_REQUEST, b"\x11") == StatusReply(0x11)  # ENABLE
    assert isinstance(parse_reply(Command.STATUS_REQUEST, b"\x50"), StatusReply)  # unknown
    assert abstract_status(0x50) is AcceptorStatus.FAILURE
    assert isinstance(parse_reply(Command.STACK_1, b"\x11"), Malformed)


@pytest.mark.parametrize(("payload", "reply"), [
    (b"\x13\x63", StatusReply(0x13, b"\x63")),
    (b"\x15", StatusReply(0x15)),  # VEND VALID without data (most firmware)
    (b"\x15\x64", StatusReply(0x15, b"\x64")),  # ... and with the escrow code [U]
    (b"\x17\x79", StatusReply(0x17, b"\x79")),
    (b"\x49\xa2", StatusReply(0x49, b"\xa2")),
    (b"\x13\x6f" + b"123456789012345678", StatusReply(0x13, b"\x6f" + b"123456789012345678")),
])
def test_status_replies(payload: bytes, reply: StatusReply) -> None:
    assert parse_reply(Command.STATUS_REQUEST, payload) == reply


@pytest.mark.parametrize("payload", [b"", b"\x13", b"\x17", b"\x49", b"\x11\x00", b"\x1a\x01",
                                     b"\x05"])
def test_malformed_status_replies(payload: bytes) -> None:
    assert isinstance(parse_reply(Command.STATUS_REQUEST, payload), Malformed)


def test_version_boot_and_currency_replies() -> None:
    version = parse_reply(Command.VERSION_REQUEST,
                          b"\x88i(USA)100-SS ID003-05V280-42 01AUG17 964D")
    assert version == VersionReply("i(USA)100-SS ID003-05V280-42 01AUG17 964D")
    assert isinstance(version, VersionReply)
    assert (version.model, version.firmware) == ("i(USA)100-SS", "ID003-05V280-42")
    assert parse_reply(Command.BOOT_VERSION_REQUEST, b"\x89B05 ") == BootVersionReply("B05")
    assert isinstance(parse_reply(Command.VERSION_REQUEST, b"\x8aabc"), Malformed)
    assert isinstance(parse_reply(Command.CURRENCY_ASSIGN_REQUEST, b"\x8a\x61\x27\x01"),
                      Malformed)
    assert isinstance(parse_reply(Command.CURRENCY_ASSIGN_REQUEST, b"\x8a"), Malformed)
    assert isinstance(parse_reply(Command.ACK, b"\x50"), Malformed)  # ACK expects no reply


# -- statuses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0x11, AcceptorStatus.IDLE), (0x12, AcceptorStatus.ACCEPTING),
        (0x13, AcceptorStatus.ACCEPTING), (0x14, AcceptorStatus.ACCEPTING),
        (0x15, AcceptorStatus.ACCEPTING), (0x16, AcceptorStatus.ACCEPTING),
        (0x17, AcceptorStatus.REJECTING), (0x18, AcceptorStatus.ACCEPTING),
        (0x19, AcceptorStatus.ACCEPTING), (0x1A, AcceptorStatus.DISABLED),
        (0x1B, AcceptorStatus.INITIALIZING), (0x40, AcceptorStatus.INITIALIZING),
        (0x41, AcceptorStatus.INITIALIZING), (0x42, AcceptorStatus.INITIALIZING),
        (0x43, AcceptorStatus.CASSETTE_FULL), (0x44, AcceptorStatus.CASSETTE_OUT),
        (0x45, AcceptorStatus.JAMMED), (0x46, AcceptorStatus.JAMMED),
        (0x47, AcceptorStatus.PAUSED), (0x48, AcceptorStatus.CHEATED),
        (0x49, AcceptorStatus.FAILURE),
        (0x99, AcceptorStatus.FAILURE),  # unknown: stop taking money
    ],
)
def test_state_mapping(code: int, status: AcceptorStatus) -> None:
    assert abstract_status(code) is status


def test_every_status_has_an_entry() -> None:
    assert set(STATE_TABLE) == set(Status)


@pytest.mark.parametrize(("code", "text"), [
    (0x71, "insertion"), (0x72, "magnetic"), (0x73, "residual bill at head"),
    (0x74, "calibration / multiplier"), (0x75, "conveying"), (0x76, "discrimination"),
    (0x77, "photo pattern 1"), (0x78, "photo level"), (0x79, "inhibit, or no answer to escrow"),
    (0x7B, "operation"), (0x7C, "residual at stacker"), (0x7D, "length"),
    (0x7E, "photo pattern 2"), (0x7F, "true-bill feature"),
    (0x7A, "unknown reject reason 0x7A"), (None, "unknown reject reason"),
])
def test_reject_reasons(code: int | None, text: str) -> None:
    assert reject_reason_text(code) == text


@pytest.mark.parametrize(("code", "text"), [
    (0xA2, "stack motor failure"), (0xA5, "transport motor speed failure"),
    (0xA6, "transport motor failure"), (0xA8, "solenoid failure"), (0xA9, "PCB failure"),
    (0xAB, "cash box not ready"), (0xAF, "head removed"), (0xB0, "ROM / RAM failure (boot ROM)"),
    (0xB3, "ROM / RAM failure (external ROM write)"), (0x50, "unknown failure code 0x50"),
])
def test_failure_codes(code: int, text: str) -> None:
    assert failure_text(code) == text


def test_describe_details() -> None:
    assert describe(0x17, b"\x79") == "0x17 rejecting: inhibit, or no answer to escrow"
    assert describe(0x49, b"\xa2") == "0x49 failure: stack motor failure"
    assert describe(0x13, b"\x64") == "0x13 escrow (escrow code 0x64)"
    assert describe(0x15) == "0x15 vend valid"
    assert describe(0x99, b"\x01") == "0x99 unknown status (data 01)"


# -- currency assignment and masks -------------------------------------------------------------


@pytest.mark.parametrize(("raw", "bill"), [
    (H("62 E0 05 00"), Bill(500, "EUR", 0x62)),
    (H("68 E0 32 01"), Bill(50000, "EUR", 0x68)),
    (H("64 27 32 01"), Bill(50000, "RUB", 0x64)),  # country 39 = Russia [S]
    (H("66 27 32 02"), Bill(500000, "RUB", 0x66)),
    (H("63 01 14 00"), Bill(2000, "USD", 0x63)),
    (H("61 0A 0A 02"), Bill(1000, "JPY", 0x61)),  # JPY has no minor unit
])
def test_currency_records(raw: bytes, bill: Bill) -> None:
    record = CurrencyRecord.decode(raw)
    assert record.to_bill() == bill
    assert record.encode() == raw


def test_unknown_country_needs_a_configured_currency() -> None:
    record = CurrencyRecord.decode(H("61 C8 0A 00"))  # country 200: not in the table
    assert record.to_bill() is None
    assert record.to_bill("RUB") == Bill(1000, "RUB", 0x61)
    assert CurrencyRecord.decode(H("61 27 00 00")).to_bill("RUB") is None  # unassigned
    assert CurrencyRecord.decode(H("6F 27 0A 00")).to_bill() is None  # not a bill code


@pytest.mark.parametrize(("value", "base", "exponent"), [
    (5, 5, 0), (10, 10, 0), (50, 50, 0), (100, 10, 1), (500, 50, 1), (2000, 20, 2),
    (5000, 50, 2), (250, 25, 1), (255, 255, 0),
])
def test_two_significant_digit_encoding(value: int, base: int, exponent: int) -> None:
    record = CurrencyRecord.for_value(0x61, value, 39)
    assert (record.base, record.exponent, record.value) == (base, exponent, value)


def test_for_value_rejects_unencodable() -> None:
    with pytest.raises(ValueError):
        CurrencyRecord.for_value(0x61, 257, 39)
    with pytest.raises(ValueError):
        CurrencyRecord.for_value(0x61, 0, 39)
    with pytest.raises(ValueError):
        decode_currency_table(bytes(6))


def test_currency_table_round_trip() -> None:
    records = [CurrencyRecord.for_value(0x61, 10, 39), CurrencyRecord.for_value(0x66, 5000, 39)]
    decoded = decode_currency_table(encode_currency_table(records))
    assert len(decoded) == 8
    assert [r for r in decoded if r.base] == records


@pytest.mark.parametrize(("enabled", "wire"), [
    (range(0x61, 0x69), "00 00"),  # ENABLE all, the id003.md vector's data
    ([], "FF 00"),
    ([0x61], "FE 00"),
    ([0x68], "7F 00"),
    ([0x62, 0x64], "F5 00"),
])
def test_inhibit_masks(enabled: list[int], wire: str) -> None:
    assert encode_inhibit_mask(enabled) == H(wire)
    assert decode_inhibit_mask(H(wire)) == frozenset(range(0x61, 0x69)) - set(enabled)


def test_mask_rejects_codes_out_of_range_and_codes_for_filters() -> None:
    with pytest.raises(ValueError):
        encode_inhibit_mask([0x6F])
    bills = {0x61: Bill(1000, "RUB", 0x61), 0x64: Bill(50000, "RUB", 0x64),
             0x65: Bill(50000, "USD", 0x65)}
    assert codes_for(bills, [50000, 123]) == {0x64, 0x65}
    assert codes_for(bills, [50000], "RUB") == {0x64}


# -- one credit per bill: event keys and the stack marker -------------------------------------


def test_vend_edge_same_key_until_the_next_stack_or_the_bill_settles() -> None:
    edge = VendEdge("run1")
    req, unreq, pwr = StackOrigin.REQUESTED, StackOrigin.UNREQUESTED, StackOrigin.POWER_UP
    b500, b100 = Bill(50000, "RUB", 0x64), Bill(10000, "RUB", 0x63)
    assert edge.fresh
    first = edge.vend_valid(b500, "U(RUS)-SS", req)
    assert first.key == "id003:U(RUS)-SS:run1:1" and not edge.fresh
    assert edge.vend_valid(b500, "U(RUS)-SS", unreq) == first  # repeat keeps key, origin
    assert edge.vend_valid(b500, "U(RUS)-SS", pwr) == first  # replay, bill not settled yet
    edge.stack_sent()
    second = edge.vend_valid(b500, "U(RUS)-SS", req)
    assert second.key == "id003:U(RUS)-SS:run1:2"
    assert edge.vend_valid(b100, "U(RUS)-SS", req).key.endswith(":3")  # other bill
    edge.settled()  # the unit idled: the next VEND VALID is another physical bill
    fourth = edge.vend_valid(b100, "U(RUS)-SS", pwr)
    assert (fourth.key, fourth.origin) == ("id003:U(RUS)-SS:run1:4", pwr)
    edge.settled()
    unnamed = edge.vend_valid(None, "U(RUS)-SS", pwr)
    assert unnamed.key.endswith(":5") and unnamed.bill is None
    assert edge.vend_valid(None, "U(RUS)-SS", pwr) == unnamed  # its repeat (lost ACK)


def test_stack_marker_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "marker.json"
    bill = Bill(50000, "RUB", 0x64)
    marker = StackMarker(path)
    assert marker.open_bill is None and marker.last_bill is None
    marker.sent(bill)
    again = StackMarker(path)
    assert again.open_bill == bill and again.last_bill == bill
    again.close()
    third = StackMarker(path)
    assert third.open_bill is None and third.last_bill == bill
    path.write_text("{not json")
    assert StackMarker(path).last_bill is None  # unreadable: ignored, never fatal
    StackMarker(None).sent(bill)  # no file: in memory only


# -- profile settings ---------------------------------------------------------------------------


def test_id003_settings_from_profile(tmp_path: Path) -> None:
    default = Id003Settings.from_profile(load_profile(write_profile(tmp_path, "a")))
    assert (default.stack_command, default.power_recovery, default.currency) == (
        Command.STACK_1, True, None)
    other = Id003Settings.from_profile(load_profile(write_profile(
        tmp_path, "b", **{"stack = 1": "stack = 2\ncurrency = \"KZT\"",
                          "power_recovery = true": "power_recovery = false"})))
    assert (other.stack_command, other.power_recovery, other.currency) == (
        Command.STACK_2, False, "KZT")


@pytest.mark.parametrize(("old", "new", "key"), [
    ("stack = 1", "stack = 3", "id003.stack"),
    ("power_recovery = true", 'power_recovery = "yes"', "id003.power_recovery"),
    ("stack = 1", 'stack = 1\ncurrency = "rubles"', "id003.currency"),
])
def test_bad_id003_settings_name_file_and_key(tmp_path: Path, old: str, new: str,
                                              key: str) -> None:
    path = write_profile(tmp_path, "bad", **{old: new})
    with pytest.raises(ProfileError, match=f"{path}.*{key}"):
        Id003Settings.from_profile(load_profile(path))
