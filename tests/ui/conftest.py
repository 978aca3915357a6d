"""UI test fixtures: our own Xvfb, one Kivy window, a real core with simulated devices.

- `xvfb` starts Xvfb on a free display (`-displayfd`: the server picks the number) and
  stops it after the session; without Xvfb the suite fails loudly, never skips.
- `window` makes the one Kivy window of this process (1280×1024 at 96 DPI, a 17" 5:4
  panel) after the environment is set; Kivy is imported only from here on.
- `terminal` starts the real core daemon (tests/core/daemon.py) with the virtual bill
  acceptor and an ESC/POS printer simulator on a pseudo-terminal (real printer driver),
  the simulator in a process of its own (tests/printer/sim_process.py): this process
  draws Kivy frames that hold the GIL longer than a printer may take to answer.
- `make_ui` builds the UI controller against that core and returns a `Driver`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.core.daemon import Core, write_config
from tests.printer.sim_process import PrinterProcess
from tests.xvfb import Xvfb, XvfbError

WIDTH, HEIGHT, DPI = 1280, 1024, 96.0
PRINTER_PROFILE = "custom_vkp80iii"
XVFB_SIZE = (1920, 1920)  # room for every screen size the tests set


@pytest.fixture(scope="session")
def xvfb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        server = Xvfb(tmp_path_factory.mktemp("xvfb") / "xvfb.log", XVFB_SIZE).start()
    except XvfbError as exc:
        pytest.fail(str(exc))
    yield server.display
    server.stop()


@pytest.fixture(scope="session")
def window(xvfb: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    saved = {k: os.environ.get(k) for k in ("DISPLAY", "KIVY_NO_ARGS", "KIVY_NO_CONSOLELOG",
                                            "KIVY_HOME", "KIVY_NO_FILELOG", "KIVY_CLOCK",
                                            "KIVY_LOG_MODE")}
    # PYTHON log mode: Kivy must not take over the root logger or sys.stderr of the test
    # process (the rest of the suite runs in it too).
    os.environ.update(DISPLAY=xvfb, KIVY_NO_ARGS="1", KIVY_NO_CONSOLELOG="1",
                      KIVY_NO_FILELOG="1", KIVY_LOG_MODE="PYTHON",
                      KIVY_HOME=str(tmp_path_factory.mktemp("kivy-home")))
    from ui.__main__ import prepare_kivy
    from ui.config import UiConfig

    prepare_kivy(UiConfig(width=WIDTH, height=HEIGHT, dpi=DPI))
    from kivy.base import EventLoop
    from kivy.core.window import Window

    EventLoop.ensure_window()
    assert (Window.width, Window.height) == (WIDTH, HEIGHT), Window.size
    yield Window
    Window.close()  # before Xvfb goes: an X client losing its server exits the process
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@dataclass
class Terminal:
    """A core daemon with a virtual acceptor and a printer simulator on a pty."""

    core: Core
    printer: PrinterProcess
    workdir: Path
    extra: list[str] = field(default_factory=list)

    def insert(self, rubles: int) -> None:
        with open(self.core.inbox, "a", encoding="utf-8") as f:
            f.write(f"insert {rubles}\n")

    def client(self) -> Any:
        from kiosk.api_client import ApiClient

        c = ApiClient(self.core.socket)
        c.connect(subscribe=True)
        return c

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.core.ledger}?mode=ro", uri=True)

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        with self.db() as conn:
            return list(conn.execute(sql, args))


@pytest.fixture
def terminal_factory(tmp_path: Path) -> Iterator[Callable[..., Terminal]]:
    from drivers.sim.printer import Fault

    made: list[Terminal] = []

    def make(extra: str = "", printer_fault: str | None = None, start: bool = True) -> Terminal:
        work = tmp_path / f"terminal{len(made)}"
        work.mkdir()
        # its own process, as a device: this one draws frames holding the GIL
        printer = PrinterProcess(work / "printer.pty", work / "receipts", PRINTER_PROFILE)
        printer.start()
        if printer_fault:
            printer.set_fault(Fault(printer_fault))
        config = write_config(work, f"""
[printer]
kind = "escpos"
port = "{work / "printer.pty"}"
profile = "{PRINTER_PROFILE}"
{extra}
""")
        t = Terminal(Core(config, work), printer, work)
        made.append(t)
        if start:
            t.core.start()
        return t

    yield make
    for t in made:
        if t.core.proc is not None and t.core.proc.poll() is None:
            t.core.kill()
        t.printer.stop()


@pytest.fixture
def make_ui(window: Any, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable]:
    from tests.ui.harness import Driver
    from ui.app import KioskUi
    from ui.config import UiConfig

    made: list[Any] = []

    def make(terminal: Terminal | None, socket: Path | None = None, **cfg: Any) -> Driver:
        sock = socket or (terminal.core.socket if terminal else tmp_path / "none.sock")
        conf = UiConfig(**{"socket": sock, "width": WIDTH, "height": HEIGHT, "dpi": DPI,
                           "retry_s": 0.3, **cfg})
        ui = KioskUi(conf)
        window.add_widget(ui.root)
        ui.start()
        made.append(ui)
        drain = terminal.core.drain_output if terminal else None
        return Driver(ui, tmp_path / "screens", on_pump=drain,
                      gallery_prefix=f"{request.node.name.removeprefix('test_')}-")

    yield make
    from kivy.base import EventLoop

    for ui in made:
        ui.stop()
        window.remove_widget(ui.root)
    for _ in range(3):
        EventLoop.idle()
