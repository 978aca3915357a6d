"""Table tests: CRC, frames (every vector of docs/protocols/ccnet.md), replies, states."""

from __future__ import annotations

import pytest

from drivers.acceptor import AcceptorStatus, Bill, StackOrigin
from drivers.ccnet.billtable import (
    BillRecord,
    bills_of,
    decode_bill_table,
    decode_mask,
    encode_bill_table,
    encode_mask,
)
from drivers.ccnet.crc import crc16, crc_bytes, frame_crc_ok
from drivers.ccnet.eventkeys import StackedEdge
from drivers.ccnet.frame import Discarded, DiscardReason, Frame, FrameDecoder, build_frame
from drivers.ccnet.protocol import BILL_TABLE_LEN, Command, Control
from drivers.ccnet.replies import (
    BillTable,
    ControlReply,
    Identification,
    Malformed,
    PollReply,
    StatusReply,
    is_data,
    parse_reply,
)
from drivers.ccnet.states import (
    STATE_TABLE,
    PollState,
    abstract_status,
    describe,
    failure_text,
    reject_reason_text,
)

H = bytes.fromhex

# (name, command, data, wire bytes) — host frames of ccnet.md, "CRC"
HOST_VECTORS = [
    ("RESET", Command.RESET, b"", "02 03 06 30 41 B3"),
    ("POLL", Command.POLL, b"", "02 03 06 33 DA 81"),
    ("ACK", Command.ACK, b"", "02 03 06 00 C2 82"),
    ("NAK", Command.NAK, b"", "02 03 06 FF BA 8D"),
    ("GET STATUS", Command.GET_STATUS, b"", "02 03 06 31 C8 A2"),
    ("IDENTIFICATION", Command.IDENTIFICATION, b"", "02 03 06 37 FE C7"),
    ("GET BILL TABLE", Command.GET_BILL_TABLE, b"", "02 03 06 41 4F D1"),
    ("STACK", Command.STACK, b"", "02 03 06 35 EC E4"),
    ("RETURN", Command.RETURN, b"", "02 03 06 36 77 D6"),
    ("HOLD", Command.HOLD, b"", "02 03 06 38 09 3F"),
    ("ENABLE all, no escrow", Command.ENABLE_BILL_TYPES, H("FFFFFF000000"),
     "02 03 0C 34 FF FF FF 00 00 00 B5 C1"),
    ("ENABLE all, escrow", Command.ENABLE_BILL_TYPES, H("FFFFFFFFFFFF"),
     "02 03 0C 34 FF FF FF FF FF FF FE F7"),
    ("DISABLE", Command.ENABLE_BILL_TYPES, H("000000000000"),
     "02 03 0C 34 00 00 00 00 00 00 17 0C"),
]

# (name, payload, wire bytes) — device frames of ccnet.md, "CRC"
DEVICE_VECTORS = [
    ("Unit Disabled", b"\x19", "02 03 06 19 82 0F"),
    ("Stacking", b"\x17", "02 03 06 17 FC E6"),
    ("Escrow type 7", b"\x80\x07", "02 03 07 80 07 33 47"),
    ("Stacked type 7", b"\x81\x07", "02 03 07 81 07 EB 5E"),
    ("Stacked type 2", b"\x81\x02", "02 03 07 81 02 46 09"),
]


def test_crc_catalogue_check_value() -> None:
    assert crc16(b"123456789") == 0x2189


@pytest.mark.parametrize(("name", "command", "data", "wire"), HOST_VECTORS,
                         ids=[v[0] for v in HOST_VECTORS])
def test_host_frame_vectors(name: str, command: Command, data: bytes, wire: str) -> None:
    assert build_frame(command, data) == H(wire)
    assert frame_crc_ok(H(wire))


@pytest.mark.parametrize(("name", "payload", "wire"), DEVICE_VECTORS,
                         ids=[v[0] for v in DEVICE_VECTORS])
def test_device_frame_vectors(name: str, payload: bytes, wire: str) -> None:
    assert build_frame(payload[0], payload[1:]) == H(wire)
    (frame,) = FrameDecoder().feed(H(wire))
    assert isinstance(frame, Frame)
    assert frame.address == 0x03
    assert frame.payload == payload


def test_crc_is_low_byte_first_and_whole_frame_residue_is_zero() -> None:
    body = H("02 03 06 33")
    assert crc_bytes(body) == H("DA 81")
    assert crc16(body + crc_bytes(body)) == 0


def test_misquoted_vector_is_rejected() -> None:
    # ccnet.md, "CRC": a public project lists "50 uah" as 02 03 07 80 03 9E 10;
    # that CRC fits type 2.
    decoded = FrameDecoder().feed(H("02 03 07 80 03 9E 10"))
    assert decoded == [Discarded(H("02 03 07 80 03 9E 10"), DiscardReason.BAD_CRC)]
    assert frame_crc_ok(H("02 03 07 80 02 9E 10"))


def test_decoder_streams_byte_by_byte() -> None:
    wire = H("02 03 07 81 07 EB 5E") + H("02 03 06 19 82 0F")
    decoder = FrameDecoder()
    out = []
    for b in wire:
        out.extend(decoder.feed(bytes([b])))
    assert [f.payload for f in out if isinstance(f, Frame)] == [b"\x81\x07", b"\x19"]
    assert decoder.pending == 0


def test_decoder_resyncs_after_garbage_and_stray_sync() -> None:
    # noise: a stray SYNC with a long LNG that would swallow the real frame
    noise = H("FF 00 02 03 40 55")
    out = FrameDecoder().feed(noise + H("02 03 07 81 07 EB 5E"))
    frames = [f for f in out if isinstance(f, Frame)]
    assert [f.payload for f in frames] == [b"\x81\x07"]
    assert all(d.reason is DiscardReason.GARBAGE for d in out if isinstance(d, Discarded))


def test_decoder_reports_bad_crc_then_finds_next_frame() -> None:
    bad = H("02 03 07 81 07 EB 5F")
    out = FrameDecoder().feed(bad + H("02 03 06 19 82 0F"))
    assert out[0] == Discarded(bad, DiscardReason.BAD_CRC)
    assert isinstance(out[1], Frame) and out[1].payload == b"\x19"


def test_decoder_rejects_impossible_lengths_and_flushes_partials() -> None:
    wire = H("02 03 05 02 03 00")  # LNG 5 is below the minimum, LNG 0 is extended framing
    out = FrameDecoder().feed(wire)
    assert all(isinstance(d, Discarded) and d.reason is DiscardReason.GARBAGE for d in out)
    assert b"".join(d.raw for d in out) == wire
    decoder = FrameDecoder()
    assert decoder.feed(H("02 03 07 81")) == []
    assert decoder.flush() == [Discarded(H("02 03 07 81"), DiscardReason.GARBAGE)]


# -- replies in the context of their request ----------------------------------------------


@pytest.mark.parametrize("request_cmd", list(Command))
@pytest.mark.parametrize(("payload", "code"), [(b"\x00", Control.ACK), (b"\xff", Control.NAK),
                                               (b"\x30", Control.ILLEGAL_COMMAND)])
def test_control_replies_mean_the_same_for_every_request(
    request_cmd: Command, payload: bytes, code: Control
) -> None:
    reply = parse_reply(request_cmd, payload)
    assert reply == ControlReply(code)
    assert not is_data(reply)


def test_poll_reply_with_and_without_z2() -> None:
    assert parse_reply(Command.POLL, b"\x14") == PollReply(0x14, None)
    assert parse_reply(Command.POLL, b"\x80\x05") == PollReply(0x80, 5)
    assert isinstance(parse_reply(Command.POLL, b"\x80\x05\x01"), Malformed)


def test_identification_reply() -> None:
    payload = b"SM-RU1353      " + b"41A123456789" + bytes(range(7))
    reply = parse_reply(Command.IDENTIFICATION, payload)
    assert reply == Identification("SM-RU1353", "41A123456789", bytes(range(7)))
    assert isinstance(reply, Identification) and reply.firmware == "1353"
    assert isinstance(parse_reply(Command.IDENTIFICATION, payload[:20]), Malformed)


def test_bill_table_starting_with_zero_is_not_an_ack() -> None:
    # lamassu PR #496: a table whose first byte is 0x00 was misread as a status.
    records = [BillRecord.for_value(2, 10, "RUS"), BillRecord.for_value(7, 5000, "RUS")]
    payload = encode_bill_table(records)
    assert payload[0] == 0 and len(payload) == BILL_TABLE_LEN
    reply = parse_reply(Command.GET_BILL_TABLE, payload)
    assert isinstance(reply, BillTable)
    assert bills_of(reply.records) == (Bill(1000, "RUB", 2), Bill(500000, "RUB", 7))
    assert isinstance(parse_reply(Command.GET_BILL_TABLE, payload[:-5]), Malformed)


def test_get_status_reply() -> None:
    reply = parse_reply(Command.GET_STATUS, H("80 00 7F 00 00 00"))
    assert reply == StatusReply(frozenset({23, *range(7)}), frozenset())


def test_data_reply_to_an_ack_only_command_is_malformed() -> None:
    assert isinstance(parse_reply(Command.STACK, b"\x14"), Malformed)
    assert isinstance(parse_reply(Command.POLL, b""), Malformed)


# -- bill table records and masks ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "bill"),
    [
        (H("05 45 55 52 00"), Bill(500, "EUR", 0)),  # lamassu's example: 5 EUR
        (H("01 52 55 53 02"), Bill(10000, "RUB", 0)),  # 100 RUB
        (H("05 52 55 53 03"), Bill(500000, "RUB", 0)),  # 5000 RUB
        (H("05 52 55 53 81"), Bill(50, "RUB", 0)),  # 0.5 RUB (negative exponent, bit 7)
        (H("01 55 53 41 00"), Bill(100, "USD", 0)),  # country USA -> USD
        (H("05 58 58 58 00"), Bill(500, "XXX", 0)),  # unknown code passes through
    ],
)
def test_bill_records(raw: bytes, bill: Bill) -> None:
    record = BillRecord.decode(0, raw)
    assert record.to_bill() == bill
    assert record.encode() == raw


@pytest.mark.parametrize("raw", [H("00 52 55 53 02"), H("00 00 00 00 00"), H("05 01 02 03 00"),
                                 H("05 52 55 53 83")])
def test_unusable_records_are_skipped(raw: bytes) -> None:
    assert BillRecord.decode(3, raw).to_bill() is None


def test_bill_table_round_trip() -> None:
    records = [BillRecord.for_value(t, v, "RUS") for t, v in [(0, 10), (5, 500), (23, 5000)]]
    decoded = decode_bill_table(encode_bill_table(records))
    assert [r for r in decoded if r.mantissa] == records


@pytest.mark.parametrize(("types", "wire"), [
    ([], "00 00 00"), ([0], "00 00 01"), ([7], "00 00 80"), ([8], "00 01 00"),
    ([23], "80 00 00"), (range(24), "FF FF FF"), ([2, 3, 4, 5], "00 00 3C"),
])
def test_masks(types: list[int], wire: str) -> None:
    assert encode_mask(types) == H(wire)
    assert decode_mask(H(wire)) == frozenset(types)


def test_for_value_rejects_unencodable() -> None:
    with pytest.raises(ValueError):
        BillRecord.for_value(0, 257, "RUS")
    with pytest.raises(ValueError):
        encode_mask([24])


# -- states --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("z1", "status"),
    [
        (0x10, AcceptorStatus.INITIALIZING), (0x11, AcceptorStatus.INITIALIZING),
        (0x12, AcceptorStatus.INITIALIZING), (0x13, AcceptorStatus.INITIALIZING),
        (0x14, AcceptorStatus.IDLE), (0x15, AcceptorStatus.ACCEPTING),
        (0x17, AcceptorStatus.ACCEPTING), (0x18, AcceptorStatus.ACCEPTING),
        (0x19, AcceptorStatus.DISABLED), (0x1A, AcceptorStatus.ACCEPTING),
        (0x1B, AcceptorStatus.INITIALIZING), (0x1C, AcceptorStatus.REJECTING),
        (0x41, AcceptorStatus.CASSETTE_FULL), (0x42, AcceptorStatus.CASSETTE_OUT),
        (0x43, AcceptorStatus.JAMMED), (0x44, AcceptorStatus.JAMMED),
        (0x45, AcceptorStatus.CHEATED), (0x46, AcceptorStatus.PAUSED),
        (0x47, AcceptorStatus.FAILURE), (0x80, AcceptorStatus.ACCEPTING),
        (0x81, AcceptorStatus.ACCEPTING), (0x82, AcceptorStatus.ACCEPTING),
        (0x99, AcceptorStatus.FAILURE),  # unknown: stop taking money
    ],
)
def test_state_mapping(z1: int, status: AcceptorStatus) -> None:
    assert abstract_status(z1) is status


def test_every_state_has_an_entry() -> None:
    assert set(STATE_TABLE) == set(PollState)


@pytest.mark.parametrize(("code", "text"), [
    (0x60, "insertion"), (0x61, "magnetic / dielectric"), (0x68, "inhibit (denomination disabled)"),
    (0x6D, "UV"), (0x92, "barcode not recognised"), (0x70, "unknown reject reason 0x70"),
    (None, "unknown reject reason"),
])
def test_reject_reasons(code: int | None, text: str) -> None:
    assert reject_reason_text(code) == text


@pytest.mark.parametrize(("code", "text"), [
    (0x50, "stack motor failure"), (0x55, "optic canal failure"), (0x56, "magnetic canal failure"),
    (0x5F, "capacitance canal failure"), (0x65, "unknown failure code 0x65"),
])
def test_failure_codes(code: int, text: str) -> None:
    assert failure_text(code) == text


def test_describe_details() -> None:
    assert describe(0x1C, 0x68) == "0x1C rejecting: inhibit (denomination disabled)"
    assert describe(0x47, 0x50) == "0x47 generic failure: stack motor failure"
    assert describe(0x1B, 5) == "0x1B device busy for 500 ms"
    assert describe(0x81, 7) == "0x81 bill stacked (bill type 7)"
    assert describe(0x99) == "0x99 unknown state"


# -- event keys ---------------------------------------------------------------------------


def test_stacked_edge_same_key_for_repeats_new_key_after_other_state() -> None:
    edge = StackedEdge("run1")
    first = edge.stacked(5, "SN", StackOrigin.REQUESTED)
    assert first.key == "ccnet:SN:run1:1"
    assert edge.stacked(5, "SN", StackOrigin.UNREQUESTED) == first  # repeat keeps key, origin
    edge.observe(PollState.STACKED)
    assert edge.stacked(5, "SN", StackOrigin.REQUESTED) == first
    edge.observe(PollState.IDLING)
    second = edge.stacked(5, "SN", StackOrigin.REQUESTED)
    assert second.key == "ccnet:SN:run1:2"
    assert edge.stacked(6, "SN", StackOrigin.REQUESTED).key == "ccnet:SN:run1:3"  # other type
    edge.observe(PollState.POWER_UP_BILL_IN_STACKER)
    third = edge.stacked(6, "SN", StackOrigin.POWER_UP)  # 0x12 then 0x81: a new stacking
    assert (third.key, third.origin) == ("ccnet:SN:run1:4", StackOrigin.POWER_UP)
