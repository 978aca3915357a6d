"""`make demo` must keep working: run it and check what it shows."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("acceptor", ["ccnet", "id003", "virtual"])
def test_demo_takes_a_payment_and_prints_the_receipt(tmp_path, acceptor):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kiosk",
            "demo",
            "--workdir",
            str(tmp_path / "demo"),
            "--acceptor",
            acceptor,
            "--no-ui",  # headless path; tests/ui/test_demo_ui.py covers the display one
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "demo finished" in out
    assert "Телефон поддержки / Support" in out and "8 800 555-35-35" in out
    assert "Платёж № / Payment        DEMO-01-00000001" in out
    assert "outbox: payment DEMO-01-00000001 waiting for the desk's ack" in out
    receipts = list((tmp_path / "demo" / "receipts").glob("*.txt"))
    assert len(receipts) == 1
