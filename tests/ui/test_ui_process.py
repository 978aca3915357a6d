"""The UI as its own process (`python -m ui`): killing it mid-payment changes nothing.

The core keeps the session and the money; a restarted UI asks for the snapshot and shows
the cash screen with the same amount. The UI process reports what it shows (`--report`:
one SHOWN line per frame that changed, with the texts of its visible labels).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kiosk.api_client import ApiClient

REPO = Path(__file__).resolve().parents[2]


class UiProcess:
    def __init__(self, where: list[str], display: str, home: Path) -> None:
        """`where`: ["-m", "ui", "--socket", S] or ["-m", "kiosk", "ui", "-c", CONFIG]."""
        env = {**os.environ, "DISPLAY": display, "KIVY_HOME": str(home),
               "KIVY_NO_CONSOLELOG": "1", "KIVY_NO_ARGS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, *where, "--report", "--size", "1280x1024", "--dpi", "96"],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.buf = b""
        self.lines: list[str] = []

    def wait_for(self, pred: Any, timeout: float = 20.0) -> dict[str, Any]:
        """The first SHOWN report (from now on) that satisfies `pred`."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                self.lines.append(text)
                if text.startswith("SHOWN "):
                    shown = json.loads(text[6:])
                    if pred(shown):
                        return shown
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                self.buf += chunk
        raise AssertionError("the UI never showed it; last lines:\n" + "\n".join(
            self.lines[-5:]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _cash_shown(amount: str) -> Any:
    return lambda s: (s["screen"] == "cash"
                      and s["labels"].get("cash.inserted", "").replace("\u00a0", " ") == amount)


def test_killing_the_ui_mid_payment_changes_nothing(terminal_factory, xvfb, tmp_path):
    term = terminal_factory()
    client = ApiClient(term.core.socket)
    client.connect()
    client.wait_for(lambda s: s["screen"] == "idle", 20)
    # first start as `kiosk ui -c kiosk.toml`: the socket comes from the core's config
    ui = UiProcess(["-m", "kiosk", "ui", "-c", str(term.core.config)], xvfb, tmp_path / "k")
    try:
        ui.wait_for(lambda s: s["screen"] == "idle")
        client.intent("select_provider", provider_id="mts")
        client.intent("submit_account", account="9161234567")
        client.intent("confirm_account")
        ui.wait_for(_cash_shown("0,00 ₽"))
        term.insert(500)
        ui.wait_for(_cash_shown("500,00 ₽"))
        ui.kill()  # kill -9 in the middle of the insertion
        term.insert(500)  # the customer goes on while no screen is up
        client.wait_for(lambda s: (s["session"] or {}).get("inserted_minor") == 100000, 10)
        ui = UiProcess(["-m", "ui", "--socket", str(term.core.socket)], xvfb, tmp_path / "k")
        shown = ui.wait_for(lambda s: s["screen"] == "cash")
        assert shown["labels"]["cash.inserted"].replace("\u00a0", " ") == "1 000,00 ₽"
        assert shown["labels"]["cash.to"] == "МТС: +7 (916) 123-45-67"
        client.intent("pay")
        ui.wait_for(lambda s: s["screen"] == "receipt"
                    and s["labels"].get("receipt.payment_id") == "T0001-00000001")
    finally:
        ui.kill()
        client.close()
    # the money: one payment with both bills, each bill counted once
    assert term.rows("SELECT id, inserted_minor, status FROM payments") == [
        ("T0001-00000001", 100000, "queued")]
    assert term.rows("SELECT count(*), sum(amount_minor) FROM stacked_bills") == [(2, 100000)]
    assert term.rows("SELECT count FROM cassette WHERE amount_minor = 50000") == [(2,)]
