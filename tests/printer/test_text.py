"""CP866 text: Russian round-trips, typography is replaced deliberately, never '?'."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.escpos import text

RUSSIAN = "Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЖИК В ТУМАНЕ № 5, 10 °C"

TYPOGRAPHY = "₽ «ёлка» „цитата“ ‘single’ — – − … € ± × • ™ © ® \u00a0\u202f\u2009½"


def test_russian_round_trip() -> None:
    data = text.encode(RUSSIAN)
    assert text.decode(data) == RUSSIAN
    assert data.decode("cp866") == RUSSIAN


def test_known_cp866_positions() -> None:
    assert text.encode("№") == b"\xfc"
    assert text.encode("Ёё°") == b"\xf0\xf1\xf8"
    assert text.encode("А") == b"\x80" and text.encode("я") == b"\xef"


@pytest.mark.parametrize(
    ("source", "printed"),
    [
        ("100 ₽", "100 руб."),
        ("«Мегафон»", '"Мегафон"'),
        ("„a“ ”b”", '"a" "b"'),
        ("it’s", "it's"),
        ("a — b – c − d ‐ e", "a - b - c - d - e"),
        ("ждите…", "ждите..."),
        ("5 €", "5 EUR"),
        ("±1 ×2 ÷3 •", "+/-1 x2 /3 *"),
        ("1\u00a0234\u202f567\u2009890", "1 234 567 890"),
        ("soft\u00adhyphen zero\u200bwidth", "softhyphen zerowidth"),
        ("tab\there", "tab here"),
        ("café Ærø naïve Straße", "cafe AEro naive Strasse"),
        ("Қазақстан", "Казакстан"),
        ("Київ", "Київ"),  # ї is in CP866
        ("іґ", "iг"),
        ("e\u0301", "e"),  # decomposed é -> NFC é -> e
        ("1\r\n2", "1\n2"),
    ],
)
def test_deliberate_replacements(source: str, printed: str) -> None:
    assert text.sanitize(source) == printed
    text.encode(source)  # and it encodes


def test_no_question_mark_for_common_typography() -> None:
    data = text.encode(TYPOGRAPHY)
    assert b"?" not in data
    assert "?" not in text.decode(data)


def test_unknown_characters_become_the_visible_fallback() -> None:
    assert text.sanitize("漢😀") == text.FALLBACK * 2
    assert text.encode("😀") == b"\xfe"


def test_control_bytes_cannot_reach_the_printer() -> None:
    hostile = "acct\x1b@\x1dV\x00\x10\x04\x01\x7f\x9b"
    data = text.encode(hostile)
    assert all(b >= 0x20 for b in data)
    assert b"\x1b" not in data and b"\x10" not in data


@given(st.text())
def test_any_text_encodes_without_question_marks_or_controls(s: str) -> None:
    data = text.encode(s)
    assert all(b >= 0x20 or b == 0x0A for b in data)
    # Only real question marks survive (including compatibility forms such as U+FF1F).
    real = sum(
        unicodedata.normalize("NFKD", ch).count("?") for ch in unicodedata.normalize("NFC", s)
    )
    assert data.count(b"?") <= real
    assert text.sanitize(text.sanitize(s)) == text.sanitize(s)  # idempotent
