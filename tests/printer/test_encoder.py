"""Document -> bytes: exact sequences per profile, and paper == plain-text layout."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.escpos import commands as c
from drivers.escpos.encoder import EscposEncoder, paper_document
from drivers.escpos.settings import PresenterKind, PresenterSettings, PrinterSettings
from drivers.layout import render_plain
from drivers.printer import Align, Document, Feed, Pair, QrCode, Rule, Text
from drivers.sim.printer import EscposInterpreter, InterpreterEvents, SimConfig
from kiosk import receipts

H = bytes.fromhex


@pytest.fixture
def vkp(printer_profiles) -> PrinterSettings:
    return PrinterSettings.from_profile(printer_profiles["custom_vkp80iii"])


@pytest.fixture
def epson(printer_profiles) -> PrinterSettings:
    return PrinterSettings.from_profile(printer_profiles["epson_tmt88"])


@pytest.fixture
def generic(printer_profiles) -> PrinterSettings:
    return PrinterSettings.from_profile(printer_profiles["generic_58mm"])


def test_setup_selects_the_profiles_code_page_after_init(vkp, generic) -> None:
    assert EscposEncoder(vkp).setup() == H("1b 40 1b 3d 01 1b 52 00 1b 74 11 1b 61 00")
    assert EscposEncoder(generic).setup() == H("1b 40 1b 3d 01 1b 52 00 1b 74 07 1b 61 00")


def test_citizen_auto_retract_goes_into_setup(vkp) -> None:
    citizen = replace(vkp, presenter=PresenterSettings(PresenterKind.CITIZEN_GS_R, timeout_s=5))
    assert EscposEncoder(citizen).setup().endswith(H("1d 52 31 05"))


def test_finish_per_profile(vkp, epson, generic) -> None:
    assert EscposEncoder(vkp).finish() == H("1b 64 03 1d 56 00 1c 50 0a 01 52 1e")
    assert EscposEncoder(epson).finish() == H("1d 56 42 00")
    assert EscposEncoder(generic).finish() == H("1b 64 04 1d 56 00")
    gs_e = replace(generic, presenter=PresenterSettings(PresenterKind.CUSTOM_GS_E, length=20))
    assert EscposEncoder(gs_e).finish().endswith(H("1d 65 03 14"))


def test_feed_longer_than_255_lines_is_split() -> None:
    assert EscposEncoder.feed(300) == H("1b 64 ff 1b 64 2d")
    assert EscposEncoder.feed(0) == b""


def test_block_bytes(vkp) -> None:
    enc = EscposEncoder(replace(vkp, columns=20))
    assert enc.encode_block(Text("Итого")) == "Итого".encode("cp866") + b"\n"
    assert enc.encode_block(Text("Hi", bold=True)) == H("1b 45 01") + b"Hi\n" + H("1b 45 00")
    assert enc.encode_block(Text("Hi", double=True, align=Align.CENTER)) == (
        H("1d 21 11") + b"    Hi\n" + H("1d 21 00")
    )
    assert enc.encode_block(Pair("A", "1", bold=True)) == (
        H("1b 45 01") + b"A" + b" " * 18 + b"1\n" + H("1b 45 00")
    )
    assert enc.encode_block(Rule("=")) == b"=" * 20 + b"\n"
    assert enc.encode_block(Feed(2)) == H("1b 64 02")
    assert enc.encode_block(QrCode("AB")) == (
        H("1b 61 01") + c.qr(b"AB", 6, c.QrErrorLevel.M) + H("1b 61 00")
    )


def test_qr_becomes_text_without_native_qr(generic) -> None:
    doc = Document("t", (QrCode("https://x.example/1"),))
    assert paper_document(doc, generic).blocks == (Text("https://x.example/1", Align.CENTER),)
    assert b"\x1d(k" not in EscposEncoder(generic).encode_document(doc)


def test_empty_or_control_only_qr_prints_nothing(vkp) -> None:
    doc = Document("t", (QrCode("\x00\x1b"),))
    assert b"\x1d(k" not in EscposEncoder(vkp).encode_document(doc)


def test_qr_payload_is_utf8_without_controls(vkp) -> None:
    out = EscposEncoder(vkp).encode_block(QrCode("Платёж\x1b1"))
    assert "Платёж1".encode() in out and b"\x1b1" not in out


def test_replacements_happen_before_layout(vkp) -> None:
    """'₽' -> 'руб.' is 3 characters wider: the pair must still fit its width."""
    enc = EscposEncoder(replace(vkp, columns=16))
    out = enc.encode_block(Pair("Итого", "10 ₽"))
    assert out == ("Итого" + " " * 4 + "10 руб.\n").encode("cp866")


def test_rule_of_unprintable_character_falls_back(vkp) -> None:
    assert paper_document(Document("t", (Rule("₽"),)), vkp).blocks == (Rule("-"),)


def _interpret(data: bytes, config: SimConfig) -> list[str]:
    got: list[str] = []
    EscposInterpreter(config, InterpreterEvents(receipt=got.append)).feed(data)
    assert len(got) <= 1
    return got[0].splitlines() if got else []


def _expected(doc: Document, settings: PrinterSettings) -> list[str]:
    lines = [
        line.rstrip() for line in render_plain(paper_document(doc, settings), settings.columns)
    ]
    while lines and not lines[-1]:
        lines.pop()
    return lines


@pytest.mark.parametrize(
    "profile",
    ["custom_vkp80iii", "generic_58mm", "citizen_ppu700", "epson_tmt88", "custom_tg2480h"],
)
def test_paper_matches_plain_layout(
    printer_profiles, profile, term, payment, unclaimed, encashment
) -> None:
    s = PrinterSettings.from_profile(printer_profiles[profile])
    config = SimConfig.from_profile(printer_profiles[profile])
    for doc in (
        receipts.payment_receipt(term, payment),
        receipts.unclaimed_slip(term, unclaimed),
        receipts.encashment_report(term, encashment),
        receipts.test_page(term, "x"),
    ):
        data = EscposEncoder(s).encode_document(doc)
        assert b"?" not in data
        assert _interpret(data, config) == _expected(doc, s)


text_st = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
block_st = st.one_of(
    st.builds(Text, text_st, st.sampled_from(list(Align)), st.booleans(), st.booleans()),
    st.builds(Pair, text_st, text_st, st.booleans()),
    st.builds(Rule, st.text(max_size=2).filter(bool)),
    st.builds(QrCode, text_st),
    st.builds(Feed, st.integers(0, 3)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(block_st, max_size=8), st.sampled_from([32, 42, 48]), st.booleans())
def test_any_document_prints_as_laid_out(blocks, columns, qr) -> None:
    s = PrinterSettings(
        name="prop",
        columns=columns,
        codepage_number=17,
        cut=c.CutMode.FULL,
        cut_feed=0,
        feed_before_cut=2,
        qr=qr,
        qr_module_size=6,
        qr_error_level=c.QrErrorLevel.M,
        full_status=True,
        status_timeout_ms=200,
        print_timeout_ms=1000,
        realtime_clear=False,
        presenter=PresenterSettings(),
    )
    doc = Document("prop", tuple(blocks))
    got = _interpret(EscposEncoder(s).encode_document(doc), SimConfig(columns=columns))
    assert got == _expected(doc, s)
