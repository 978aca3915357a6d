"""Property-based fuzzing of the ID-003 frame decoder and reply parser (hypothesis).

The checks use an independent bit-by-bit CRC, not the driver's table, so a wrong table
cannot hide a wrong acceptance: no exception escapes, no false frame is accepted, every
byte is accounted for, and a valid frame is found after any noise and any chunking.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.id003.frame import Discarded, DiscardReason, Frame, FrameDecoder, build_frame
from drivers.id003.protocol import MAX_DATA_LEN, Command
from drivers.id003.replies import parse_reply
from tests import acceptor_line
from tests.acceptor_line import FUZZ, cuts, reference_crc_ok


def reference_valid(frame: bytes) -> bool:
    return (
        len(frame) >= 5
        and frame[0] == 0xFC
        and frame[1] == len(frame)
        and reference_crc_ok(frame)
    )


def feed_chunked(data: bytes, cut: list[int]) -> list[Frame | Discarded]:
    return acceptor_line.feed_chunked(FrameDecoder(), data, cut)


codes = st.integers(min_value=0, max_value=255)


@FUZZ
@given(data=st.binary(max_size=600), cut=cuts)
def test_random_bytes_never_raise_and_only_valid_frames_come_out(
    data: bytes, cut: list[int]
) -> None:
    for item in feed_chunked(data, cut):
        if isinstance(item, Frame):
            assert reference_valid(item.raw)


@FUZZ
@given(data=st.binary(max_size=600), cut=cuts)
def test_decoder_accounts_for_every_byte(data: bytes, cut: list[int]) -> None:
    """Nothing is invented or lost silently: frames and discards rebuild the input."""
    assert b"".join(item.raw for item in feed_chunked(data, cut)) == data


@FUZZ
@given(code=codes, data=st.binary(max_size=MAX_DATA_LEN), cut=cuts,
       noise=st.binary(max_size=40).map(lambda b: b.replace(b"\xfc", b"\xfd")))
def test_valid_frame_survives_any_chunking_after_sync_free_noise(
    code: int, data: bytes, cut: list[int], noise: bytes
) -> None:
    frame = build_frame(code, data)
    out = feed_chunked(noise + frame, cut)
    assert [i.raw for i in out if isinstance(i, Frame)] == [frame]


@FUZZ
@given(code=codes, data=st.binary(max_size=60), noise=st.binary(max_size=40))
def test_valid_frame_found_after_any_noise_in_one_read(
    code: int, data: bytes, noise: bytes
) -> None:
    frame = build_frame(code, data)
    out = FrameDecoder().feed(noise + frame)
    assert frame in [i.raw for i in out if isinstance(i, Frame)]


@FUZZ
@given(
    code=codes,
    data=st.binary(max_size=60),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=7)),
                   min_size=1, max_size=3),
    cut=cuts,
)
def test_mutated_frame_is_never_accepted(
    code: int, data: bytes, flips: list[tuple[int, int]], cut: list[int]
) -> None:
    """1-3 flipped bits anywhere but LNG: CRC-16 (Hamming distance 4) catches them all."""
    original = build_frame(code, data)
    frame = bytearray(original)
    positions = [p for p in range(len(frame)) if p != 1]
    for pos, bit in flips:
        frame[positions[pos % len(positions)]] ^= 1 << bit
    mutated = bytes(frame)
    if mutated == original:
        return  # flips cancelled out
    out = feed_chunked(mutated, cut)
    assert [i.raw for i in out if isinstance(i, Frame)] == []
    if mutated[0] == 0xFC:
        assert any(isinstance(i, Discarded) and i.reason is DiscardReason.BAD_CRC for i in out)


@FUZZ
@given(code=codes, data=st.binary(max_size=60), pos=st.integers(min_value=0),
       value=st.integers(min_value=0, max_value=255), cut=cuts)
def test_any_single_byte_substitution_yields_only_valid_frames(
    code: int, data: bytes, pos: int, value: int, cut: list[int]
) -> None:
    frame = bytearray(build_frame(code, data))
    frame[pos % len(frame)] = value
    for item in feed_chunked(bytes(frame), cut):
        if isinstance(item, Frame):
            assert reference_valid(item.raw)


@FUZZ
@given(request=st.sampled_from(list(Command)), payload=st.binary(max_size=260))
def test_reply_parser_never_raises(request: Command, payload: bytes) -> None:
    parse_reply(request, payload)


@FUZZ
@given(request=st.sampled_from(list(Command)), data=st.binary(max_size=250), noise=cuts)
def test_decoded_then_parsed_never_raises(request: Command, data: bytes,
                                          noise: list[int]) -> None:
    stream = bytes(n % 256 for n in noise) + build_frame(request, data)
    for item in FrameDecoder().feed(stream):
        if isinstance(item, Frame):
            parse_reply(request, item.payload)
