"""Property-based fuzzing of the frame decoder and reply parser (hypothesis).

The checks use an independent bit-by-bit CRC, not the driver's table, so a wrong table
cannot hide a wrong acceptance.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.ccnet.frame import Discarded, DiscardReason, Frame, FrameDecoder, build_frame
from drivers.ccnet.protocol import MAX_PAYLOAD_LEN, Command
from drivers.ccnet.replies import parse_reply
from tests import acceptor_line
from tests.acceptor_line import FUZZ, cuts, reference_crc_ok


def reference_valid(frame: bytes) -> bool:
    return (
        len(frame) >= 6
        and frame[0] == 0x02
        and frame[2] == len(frame)
        and reference_crc_ok(frame)
    )


def feed_chunked(data: bytes, cut: list[int]) -> list[Frame | Discarded]:
    return acceptor_line.feed_chunked(FrameDecoder(), data, cut)


@FUZZ
@given(data=st.binary(max_size=600), cut=cuts)
def test_random_bytes_never_raise_and_only_valid_frames_come_out(
    data: bytes, cut: list[int]
) -> None:
    out = feed_chunked(data, cut)
    for item in out:
        if isinstance(item, Frame):
            assert reference_valid(item.raw)


@FUZZ
@given(data=st.binary(max_size=600), cut=cuts)
def test_decoder_accounts_for_every_byte(data: bytes, cut: list[int]) -> None:
    """Nothing is invented or lost silently: frames and discards rebuild the input."""
    out = feed_chunked(data, cut)
    assert b"".join(item.raw for item in out) == data


@FUZZ
@given(payload=st.binary(min_size=1, max_size=MAX_PAYLOAD_LEN), cut=cuts,
       noise=st.binary(max_size=40).map(lambda b: b.replace(b"\x02", b"\x03")))
def test_valid_frame_survives_any_chunking_after_sync_free_noise(
    payload: bytes, cut: list[int], noise: bytes
) -> None:
    frame = build_frame(payload[0], payload[1:])
    out = feed_chunked(noise + frame, cut)
    assert [i.raw for i in out if isinstance(i, Frame)] == [frame]


@FUZZ
@given(payload=st.binary(min_size=1, max_size=60), noise=st.binary(max_size=40))
def test_valid_frame_found_after_any_noise_in_one_read(payload: bytes, noise: bytes) -> None:
    frame = build_frame(payload[0], payload[1:])
    out = FrameDecoder().feed(noise + frame)
    assert frame in [i.raw for i in out if isinstance(i, Frame)]


@FUZZ
@given(
    payload=st.binary(min_size=1, max_size=60),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=7)),
                   min_size=1, max_size=3),
    cut=cuts,
)
def test_mutated_frame_is_never_accepted(
    payload: bytes, flips: list[tuple[int, int]], cut: list[int]
) -> None:
    """1-3 flipped bits anywhere but LNG: CRC-16 (Hamming distance 4) catches them all."""
    frame = bytearray(build_frame(payload[0], payload[1:]))
    positions = [p for p in range(len(frame)) if p != 2]
    for pos, bit in flips:
        frame[positions[pos % len(positions)]] ^= 1 << bit
    mutated = bytes(frame)
    out = feed_chunked(mutated, cut)
    accepted = [i.raw for i in out if isinstance(i, Frame)]
    if mutated == build_frame(payload[0], payload[1:]):
        return  # flips cancelled out
    assert accepted == []
    if mutated[0] == 0x02:
        assert any(isinstance(i, Discarded) and i.reason is DiscardReason.BAD_CRC for i in out)


@FUZZ
@given(payload=st.binary(min_size=1, max_size=60), pos=st.integers(min_value=0),
       value=st.integers(min_value=0, max_value=255), cut=cuts)
def test_any_single_byte_substitution_yields_only_valid_frames(
    payload: bytes, pos: int, value: int, cut: list[int]
) -> None:
    frame = bytearray(build_frame(payload[0], payload[1:]))
    frame[pos % len(frame)] = value
    for item in feed_chunked(bytes(frame), cut):
        if isinstance(item, Frame):
            assert reference_valid(item.raw)


@FUZZ
@given(request=st.sampled_from(list(Command)), payload=st.binary(max_size=260))
def test_reply_parser_never_raises(request: Command, payload: bytes) -> None:
    parse_reply(request, payload)
