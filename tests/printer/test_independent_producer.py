"""The simulator against an ESC/POS producer and consumer that are not ours.

python-escpos (PyPI `python-escpos`, a test-only dependency: the `dev` extra) composes a
short Russian receipt with its own command builder and its own code-page choice
(MagicEncode, driven by an escpos-printer-db profile) and writes it to the simulator's pty
through its own Serial connector. The simulator must decode exactly the Russian text:
it is a model of a printer, not a mirror of drivers/escpos/encoder.py. python-escpos also
reads the simulator's DLE EOT 1 / DLE EOT 4 answers with its own decoding.

What python-escpos 3.1 picks for Russian text (docs/protocols/escpos.md, "Code page"):
- profile "default" (and TM-T88V, CT-S651): ESC t 17 = CP866, our VKP80III/TM-T88 model;
- profile "TH230" (Xprinter clone): ESC t 7 = CP866, our generic_58mm model;
- profile "RP326" (Rongta clone): ESC t 28 = **CP855**, not CP866 — MagicEncode takes the
  first table of the profile that holds every character. A real RP326 prints CP855 (its
  table per escpos-printer-db), so the simulator is given that table (SimConfig
  .code_pages); without it the text comes out as PC437 garbage, as on a printer that
  lacks the table.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from escpos.escpos import Escpos
from escpos.printer import Dummy, Serial

from drivers.sim.printer import Fault, PrinterSimulator, SimConfig

ESC_T = b"\x1bt"
GS_V = b"\x1dV"
READ_TIMEOUT_S = 0.1  # python-escpos waits this long for every status reply (read(16))
RECEIPT_TIMEOUT_S = 5.0

# (text, centred?) in the order printed. Short enough for a 58 mm roll (32 columns; the
# double-size line takes 2 columns a character), so every line is one line on paper.
CENTRE, LEFT = True, False
EXPECTED: list[tuple[str, bool]] = [
    ("Чек об оплате", CENTRE),  # bold, double width and height
    ("Платёж № 17-000123", LEFT),
    ("Сумма: 1 234,50 руб.", LEFT),
    ("Зачислено: 1 200,00 руб.", LEFT),  # bold
    ("ИТОГО 500", LEFT),  # double width and height
    ("Съешь же ещё этих булок", CENTRE),
    ("Тел. 8 800 555-35-35", CENTRE),  # bold
]

# The Rongta RP326 / RP332 / Xprinter tables beside CP866 (docs/protocols/escpos.md, "Code page").
CLONE_TABLES = ((6, "cp1251"), (28, "cp855"))
CLONE = SimConfig(name="generic_58mm", columns=32, codepage_number=7, full_status=False)
EPSON_LIKE = SimConfig(name="epson_like", columns=42, codepage_number=17, full_status=False)

CASES = [
    # python-escpos profile, simulated printer, ESC t it picks, the table it means
    pytest.param("default", EPSON_LIKE, 17, "cp866", id="default-esc-t-17-cp866"),
    pytest.param("TH230", CLONE, 7, "cp866", id="TH230-esc-t-7-cp866"),
    pytest.param(
        "RP326",
        replace(CLONE, code_pages=CLONE_TABLES),
        28,
        "cp855",
        id="RP326-esc-t-28-cp855",
    ),
]


def compose(p: Escpos) -> None:
    """The receipt, through python-escpos's own API only."""
    p.set(align="center", bold=True, double_height=True, double_width=True)
    p.textln(EXPECTED[0][0])
    p.set_with_default()
    p.textln(EXPECTED[1][0])
    p.text(EXPECTED[2][0] + "\n")
    p.set_with_default(bold=True)
    p.textln(EXPECTED[3][0])
    p.set_with_default(double_height=True, double_width=True)
    p.textln(EXPECTED[4][0])
    p.set_with_default(align="center")
    p.textln(EXPECTED[5][0])
    p.set(bold=True)
    p.textln(EXPECTED[6][0])
    p.cut()  # ESC d 6, GS V 0


def produced(profile: str) -> bytes:
    printer = Dummy(profile=profile)
    compose(printer)
    return printer.output


@pytest.fixture
def started():
    sims: list[PrinterSimulator] = []

    def start(config: SimConfig) -> PrinterSimulator:
        sim = PrinterSimulator(config).start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        sim.stop()


def print_through_python_escpos(sim: PrinterSimulator, profile: str) -> str:
    """python-escpos's Serial connector writes the receipt to the pty; the decoded text."""
    printer = Serial(devfile=sim.path, baudrate=9600, timeout=READ_TIMEOUT_S, profile=profile)
    try:
        compose(printer)
    finally:
        printer.close()
    assert sim.wait_for_receipts(1, timeout=RECEIPT_TIMEOUT_S), sim.events
    return sim.receipts[0]


@pytest.mark.parametrize(("profile", "config", "number", "codec"), CASES)
def test_python_escpos_picks_its_own_code_page(profile, config, number, codec) -> None:
    """State which table python-escpos selects, and that the bytes are that table's."""
    data = produced(profile)
    assert data.count(ESC_T) == 1
    assert data[data.index(ESC_T) + 2] == number
    for text, _ in EXPECTED:
        assert text.encode(codec) in data
    assert data.endswith(GS_V + b"\x00")
    assert not data.startswith(b"\x1b@")  # no ESC @: the simulator starts from power-on


@pytest.mark.parametrize(("profile", "config", "number", "codec"), CASES)
def test_simulator_decodes_python_escpos_russian_exactly(
    started, profile, config, number, codec
) -> None:
    sim = started(config)
    receipt = print_through_python_escpos(sim, profile)
    lines = receipt.split("\n")
    assert lines[-1] == ""  # a receipt ends with its last line's newline
    lines = lines[:-1]
    assert [line.strip() for line in lines] == [text for text, _ in EXPECTED]
    for line, (_, centred) in zip(lines, EXPECTED):
        assert line.startswith(" ") == centred, line
    assert len(sim.receipts) == 1  # one cut, one receipt
    assert not any(e.startswith("unknown") for e in sim.events), sim.events


def test_without_the_table_the_rongta_bytes_are_garbage(started) -> None:
    """The same RP326 bytes on a model that knows only CP866 at 7: PC437 box drawing, as
    a printer without CP855 would print them (so the table above is doing the work)."""
    sim = started(CLONE)
    receipt = print_through_python_escpos(sim, "RP326")
    assert EXPECTED[1][0] not in receipt
    assert EXPECTED[1][0].encode("cp855").decode("cp437") in receipt


@pytest.mark.parametrize(
    ("fault", "online", "paper"),
    [
        (None, True, 2),
        (Fault.PAPER_NEAR_END, True, 1),
        (Fault.PAPER_OUT, False, 0),
        (Fault.COVER_OPEN, False, 2),
        (Fault.CUTTER_ERROR, False, 2),
    ],
    ids=["ok", "paper_near_end", "paper_out", "cover_open", "cutter_error"],
)
def test_python_escpos_reads_the_simulator_status(started, fault, online, paper) -> None:
    """DLE EOT 1 (is_online) and DLE EOT 4 (paper_status: 2 adequate, 1 near end, 0 none)
    decoded by python-escpos from the simulator's replies."""
    sim = started(EPSON_LIKE)
    if fault is not None:
        sim.set_fault(fault)
    printer = Serial(devfile=sim.path, timeout=READ_TIMEOUT_S)
    try:
        assert printer.is_online() is online
        assert printer.paper_status() == paper
    finally:
        printer.close()


def test_offline_simulator_is_silent_to_python_escpos(started) -> None:
    """An offline printer does not answer: python-escpos reads no reply as "not online"
    but as "paper adequate" (2), an unsafe default for a kiosk
    (the kiosk driver treats silence as OFFLINE: tests/printer/test_driver.py)."""
    sim = started(EPSON_LIKE)
    sim.set_fault(Fault.OFFLINE)
    printer = Serial(devfile=sim.path, timeout=READ_TIMEOUT_S)
    try:
        assert printer.is_online() is False
        assert printer.paper_status() == 2
    finally:
        printer.close()
