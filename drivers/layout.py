"""Pure text layout of a Document at a given paper width (columns of the normal font).

Used by every printer driver so that the same receipt reads the same on the virtual
printer, in logs, and on paper. Double-size text takes two columns per character.
"""

from __future__ import annotations

import textwrap

from drivers.printer import Align, Block, Document, Feed, Pair, QrCode, Rule, Text


def wrap(text: str, width: int) -> list[str]:
    """Wrap on spaces; break words longer than the line. Keeps explicit newlines."""
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    out: list[str] = []
    for paragraph in text.split("\n"):
        lines = textwrap.wrap(paragraph, width=width, break_long_words=True, break_on_hyphens=False)
        out.extend(lines or [""])
    return out


def align_line(line: str, width: int, align: Align) -> str:
    if align is Align.CENTER:
        pad = max(0, width - len(line))
        return " " * (pad // 2) + line
    if align is Align.RIGHT:
        return line.rjust(width)
    return line


def pair_lines(label: str, value: str, width: int) -> list[str]:
    """`label ..... value` on one line when it fits, else value right-aligned below."""
    if len(label) + 1 + len(value) <= width:
        return [label + " " * (width - len(label) - len(value)) + value]
    lines = wrap(label, width)
    lines.extend(v.rjust(width) for v in wrap(value, width))
    return lines


def block_lines(block: Block, columns: int) -> list[str]:
    """Lines of one block, in logical characters (double text: half as many per line)."""
    if isinstance(block, Text):
        width = columns // 2 if block.double else columns
        return [align_line(line, width, block.align) for line in wrap(block.text, width)]
    if isinstance(block, Pair):
        return pair_lines(block.label, block.value, columns)
    if isinstance(block, Rule):
        return [block.char * columns]
    if isinstance(block, QrCode):
        return [
            align_line(line, columns, Align.CENTER) for line in wrap(f"[QR: {block.data}]", columns)
        ]
    if isinstance(block, Feed):
        return [""] * block.lines
    raise TypeError(f"unknown block {block!r}")


def render_plain(document: Document, columns: int) -> list[str]:
    lines: list[str] = []
    for block in document.blocks:
        lines.extend(block_lines(block, columns))
    return lines
