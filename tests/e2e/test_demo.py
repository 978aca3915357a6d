"""`make demo` must keep working: run it and check what it shows."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import urllib.parse

import pytest

from tests.desk.web import Client
from tests.sync.broker import free_port

DEMO_WAIT_S = 120.0  # a shared, loaded machine: the whole demo before the page is offered


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


def test_demo_desk_serves_the_page_that_lists_the_demo_payment(tmp_path):
    """`kiosk demo --desk` (README, "See the desk page"): the payment goes through a local
    mosquitto to a desk on SQLite, and the page, logged in as the demo operator, finds
    it; SIGTERM (as Ctrl-C) ends the demo with its usual exit code."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "demo", "--desk", "--no-ui", "--acceptor", "virtual",
         "--workdir", str(tmp_path / "demo"), "--http", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    out: list[str] = []
    assert proc.stdout is not None
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []],
                     daemon=True).start()
    try:
        while not any("log in as 'demo'" in line for line in out):
            try:
                out.append(lines.get(timeout=DEMO_WAIT_S))
            except queue.Empty:
                pytest.fail("the demo never offered the page:\n" + "".join(out))
            assert proc.poll() is None or not lines.empty(), "".join(out)
        text = "".join(out)
        assert "outbox: payment DEMO-01-00000001 acknowledged by the desk" in text
        assert f"open http://127.0.0.1:{port}/" in text
        web = Client(port)
        status, page = web.login("demo", "demo-desk")
        assert status == 200 and 'id="who"' in page, page
        for typed in ("DEMO-01-00000001", "+7 916 123-45-67"):
            status, page = web.get("/?" + urllib.parse.urlencode({"q": typed}))
            assert status == 200 and 'id="results"' in page, page
            assert "DEMO-01-00000001" in page and "9161234567" in page
        status, page = web.get("/payment?t=DEMO-01&id=DEMO-01-00000001")
        assert status == 200 and "Запись получена от терминала" in page
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    while not lines.empty():
        out.append(lines.get())
    assert rc == 0, "".join(out)
    assert "demo finished" in "".join(out)
