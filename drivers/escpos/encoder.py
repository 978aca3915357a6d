"""Document -> ESC/POS bytes for one printer model (pure; no I/O).

Layout (wrapping, padding, alignment by spaces) is drivers.layout's, applied to the
*printed* text (after CP866 replacements), so the paper reads exactly like
`render_plain(paper_document(doc, settings), columns)`; the simulator tests rely on that.
Alignment commands are used only for the QR symbol, which is not text.
"""

from __future__ import annotations

from dataclasses import replace

from drivers.escpos import commands as cmd
from drivers.escpos import text
from drivers.escpos.settings import PresenterKind, PrinterSettings
from drivers.layout import block_lines
from drivers.printer import Align, Block, Document, Feed, Pair, QrCode, Rule, Text

QR_TEXT_ENCODING = "utf-8"  # what phone QR readers expect; CP866 is only for the paper
DEFAULT_RULE = "-"
FEED_CHUNK = cmd.BYTE_MAX


def _one_line(value: str) -> str:
    return text.sanitize(value.replace("\n", " "))


def qr_payload(data: str) -> str:
    """QR content without control characters (they are not data anyone meant to encode)."""
    return "".join(ch for ch in data if ch.isprintable() or ch == " ")


def printable_block(block: Block, *, native_qr: bool) -> Block:
    """The block as it will be printed: CP866-safe text; a QR becomes centred text on a
    printer without native QR so the customer still gets the link or id (unless the
    document prints that text itself: `QrCode.text_fallback`)."""
    if isinstance(block, Text):
        return replace(block, text=text.sanitize(block.text))
    if isinstance(block, Pair):
        return replace(block, label=_one_line(block.label), value=_one_line(block.value))
    if isinstance(block, Rule):
        char = _one_line(block.char)
        return Rule(char if len(char) == 1 and char.strip() else DEFAULT_RULE)
    if isinstance(block, QrCode):
        payload = qr_payload(block.data)
        if not payload.strip():
            return Feed(0)  # nothing to encode; an empty symbol is a printer error
        fits = len(payload.encode(QR_TEXT_ENCODING)) <= cmd.QR_MAX_DATA
        if native_qr and fits:
            return QrCode(payload)
        if not block.text_fallback:
            return Feed(0)  # the document prints the text itself: never twice
        return Text(text.sanitize(payload), Align.CENTER)
    return block


def paper_document(document: Document, settings: PrinterSettings) -> Document:
    """What actually lands on paper for this model, as a Document (for previews and tests)."""
    blocks = tuple(printable_block(b, native_qr=settings.qr) for b in document.blocks)
    return Document(document.kind, blocks)


class EscposEncoder:
    def __init__(self, settings: PrinterSettings) -> None:
        self.settings = settings

    @property
    def columns(self) -> int:
        return self.settings.columns

    def setup(self) -> bytes:
        """Start of every job: reset, enable, code page (ESC @ resets ESC t, so it follows)."""
        out = (
            cmd.initialize()
            + cmd.enable_peripheral()
            + cmd.select_international()
            + cmd.select_code_page(self.settings.codepage_number)
            + cmd.align(Align.LEFT)
        )
        presenter = self.settings.presenter
        if presenter.kind is PresenterKind.CITIZEN_GS_R:
            out += cmd.citizen_auto_retract(presenter.timeout_s)
        return out

    def finish(self) -> bytes:
        """End of every job: feed past the tear line, cut, hand the ticket to the customer."""
        s = self.settings
        out = self.feed(s.feed_before_cut) + cmd.cut(s.cut, s.cut_feed)
        presenter = s.presenter
        if presenter.kind is PresenterKind.CUSTOM_FS_P:
            out += cmd.custom_present(presenter.length, presenter.action, presenter.timeout_s)
        elif presenter.kind is PresenterKind.CUSTOM_GS_E:
            out += cmd.custom_gs_e(cmd.CustomPresenterFunction.PRESENT, presenter.length)
        return out

    @staticmethod
    def feed(lines: int) -> bytes:
        out = b""
        while lines > 0:
            step = min(lines, FEED_CHUNK)
            out += cmd.feed_lines(step)
            lines -= step
        return out

    def _lines(self, lines: list[str]) -> bytes:
        return b"".join(text.encode(line) + cmd.line_feed() for line in lines)

    def encode_block(self, block: Block) -> bytes:
        """One block, made printable first (CP866 text, QR fallback), then laid out."""
        columns = self.settings.columns
        block = printable_block(block, native_qr=self.settings.qr)
        if isinstance(block, Text):
            body = self._lines(block_lines(block, columns))
            if block.double:
                body = cmd.double_size(True) + body + cmd.double_size(False)
            if block.bold:
                body = cmd.bold(True) + body + cmd.bold(False)
            return body
        if isinstance(block, Pair):
            body = self._lines(block_lines(block, columns))
            return cmd.bold(True) + body + cmd.bold(False) if block.bold else body
        if isinstance(block, Rule):
            return self._lines(block_lines(block, columns))
        if isinstance(block, QrCode):
            return (
                cmd.align(Align.CENTER)
                + cmd.qr(
                    block.data.encode(QR_TEXT_ENCODING),
                    self.settings.qr_module_size,
                    self.settings.qr_error_level,
                )
                + cmd.align(Align.LEFT)
            )
        if isinstance(block, Feed):
            return self.feed(block.lines)
        raise TypeError(f"unknown block {block!r}")

    def encode_document(self, document: Document) -> bytes:
        """The whole job: setup, every block, feed, cut, presenter."""
        body = b"".join(self.encode_block(b) for b in document.blocks)
        return self.setup() + body + self.finish()
