"""Text for a CP866 printer: deliberate replacements, never a silent '?'.

A '?' on a receipt looks like punctuation and hides that a glyph was lost, so every
character is either in CP866, replaced by a readable equivalent from `REPLACEMENTS`,
reduced to its base letter (é -> e), dropped (invisible format characters), or shown as
`FALLBACK` (a solid box, unmistakably "missing glyph"). Replacement happens on the text
*before* layout, so widths are computed on what is actually printed.
"""

from __future__ import annotations

import unicodedata

CODEC = "cp866"
FALLBACK = "■"  # CP866 0xFE
NEWLINE = "\n"

# Characters CP866 lacks, and what a reader expects instead.
REPLACEMENTS: dict[str, str] = {
    "₽": "руб.",
    "₸": "тг.",
    "₴": "грн.",
    "€": "EUR",
    "£": "GBP",
    "«": '"',
    "»": '"',
    "„": '"',
    "“": '"',
    "”": '"',
    "‟": '"',
    "″": '"',
    "‘": "'",
    "’": "'",
    "‚": "'",
    "‛": "'",
    "′": "'",
    "—": "-",
    "–": "-",
    "‒": "-",
    "―": "-",
    "−": "-",
    "‐": "-",
    "‑": "-",
    "…": "...",
    "±": "+/-",
    "½": "1/2",
    "¼": "1/4",
    "¾": "3/4",
    "×": "x",
    "÷": "/",
    "•": "*",
    "©": "(c)",
    "®": "(R)",
    "™": "(TM)",
    "\t": " ",
    # Every kind of space prints as a space; CP866 0xFF is NBSP but some printer tables
    # put another glyph there.
    "\u00a0": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u2004": " ",
    "\u2005": " ",
    "\u2006": " ",
    "\u2007": " ",
    "\u2008": " ",
    "\u2009": " ",
    "\u200a": " ",
    "\u202f": " ",
    "\u205f": " ",
    "\u3000": " ",
    # Invisible format characters vanish.
    "\u00ad": "",
    "\u200b": "",
    "\u200c": "",
    "\u200d": "",
    "\u2060": "",
    "\ufeff": "",
    "\r": "",
    # Latin letters without a decomposition to a base letter.
    "Æ": "AE",
    "æ": "ae",
    "Œ": "OE",
    "œ": "oe",
    "Ø": "O",
    "ø": "o",
    "ß": "ss",
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    # Ukrainian / Kazakh letters outside CP866: the nearest Russian (or identical Latin)
    # letter keeps names readable.
    "і": "i",
    "І": "I",
    "ґ": "г",
    "Ґ": "Г",
    "ә": "а",
    "Ә": "А",
    "ғ": "г",
    "Ғ": "Г",
    "қ": "к",
    "Қ": "К",
    "ң": "н",
    "Ң": "Н",
    "ө": "о",
    "Ө": "О",
    "ұ": "у",
    "Ұ": "У",
    "ү": "у",
    "Ү": "У",
    "һ": "х",
    "Һ": "Х",
    "ҳ": "х",
    "Ҳ": "Х",
}


def _encodable(ch: str) -> bool:
    try:
        ch.encode(CODEC)
    except UnicodeEncodeError:
        return False
    return True


def _printable(ch: str) -> str:
    """One character -> what CP866 paper shows for it (possibly empty or several chars)."""
    if ch == NEWLINE:
        return ch
    if ch in REPLACEMENTS:
        return REPLACEMENTS[ch]
    category = unicodedata.category(ch)
    if category == "Cc":
        return FALLBACK  # control bytes would be printer commands: never pass them on
    if category in ("Mn", "Me", "Cf"):
        return ""  # a lone combining mark or format char has no glyph of its own
    if _encodable(ch):
        return ch
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if unicodedata.category(c) != "Mn")
    if base and base != ch and all(_encodable(c) and c.isprintable() for c in base):
        return base
    return FALLBACK


def sanitize(text: str) -> str:
    """Text that encodes to CP866 exactly, with no control characters except newline."""
    return "".join(_printable(ch) for ch in unicodedata.normalize("NFC", text))


def encode(text: str) -> bytes:
    """Sanitize and encode; every result byte is printable (>= 0x20) or LF."""
    return sanitize(text).encode(CODEC)


def decode(data: bytes) -> str:
    """CP866 bytes -> text (every byte has a CP866 character, so this cannot fail)."""
    return data.decode(CODEC)
