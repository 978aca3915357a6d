"""Bugs the reliability runs found, each pinned by the smallest test that shows it.

Each was pinned as an expected failure while the bug stood; all are fixed now and these
tests keep them fixed. The runs that found them are in tests/chaos/ (soak, disk) and
docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from drivers.acceptor import EscrowDecision
from kiosk.ledger import LedgerError
from tests.conftest import ManualClock
from tests.core.harness import make_terminal


def _pragma(ledger: Any, sql: str) -> None:
    raw = ledger.engine.raw_connection()
    try:
        raw.driver_connection.execute(sql)
    finally:
        raw.close()


@pytest.fixture
def term(config):  # type: ignore[no-untyped-def]
    t = make_terminal(config, ManualClock())
    yield t
    t.engine.stop()


def test_first_write_after_a_ledger_failure_brings_the_terminal_back_at_once(term):
    term.to_cash()
    assert term.acceptor.escrow(100) is EscrowDecision.STACK  # escrow marker on disk
    _pragma(term.ledger, "PRAGMA query_only=ON")  # the disk goes read-only while stacking
    with pytest.raises(LedgerError):
        term.acceptor.report_stacked(100, key="unit:1")  # not committed: no ACK
    assert term.engine.screen.value == "out_of_service"
    _pragma(term.ledger, "PRAGMA query_only=OFF")  # the disk is back
    term.acceptor.report_stacked(100, key="unit:1")  # the unit repeats its report
    assert "ledger" not in term.engine.oos_reasons, term.engine.oos_reasons
    term.tick(0.1)
    term.drain()
    assert term.engine.screen.value == "receipt"
    assert term.engine.last_payment["inserted_minor"] == 10_000


def test_a_read_only_ledger_can_still_be_read(term):
    payment_id = term.pay(500)
    _pragma(term.ledger, "PRAGMA query_only=ON")
    try:
        payment = term.ledger.get_payment(payment_id)
    finally:
        _pragma(term.ledger, "PRAGMA query_only=OFF")
    assert payment is not None and payment["inserted_minor"] == 50_000


def test_health_reports_out_of_service_while_the_ledger_is_read_only(term):
    from sync.health import build_health

    term.to_cash()
    _pragma(term.ledger, "PRAGMA query_only=ON")
    try:
        assert term.acceptor.escrow(100) is EscrowDecision.RETURN
        assert term.engine.screen.value == "out_of_service"
        health = build_health(term.engine, term.ledger, connection_id="c",
                              started_monotonic=0.0, config_version=0)
    finally:
        _pragma(term.ledger, "PRAGMA query_only=OFF")
    assert health["in_service"] is False and "ledger" in health["out_of_service"]


def test_printer_comes_back_after_unplug_and_replug(tmp_path: Path):
    from drivers.escpos.printer import EscposPrinter
    from drivers.printer import PrinterStatus
    from drivers.profiles import load_profile
    from drivers.sim.printer import PrinterSimulator, SimConfig
    from tests.chaos.rig import PRINTER_PROFILE, REPO

    profile = load_profile(REPO / "firmware_profiles" / f"printer_{PRINTER_PROFILE}.toml")
    link = tmp_path / "printer.pty"
    sim = PrinterSimulator(SimConfig.from_profile(profile), link=link).start()
    printer = EscposPrinter(profile, str(link))
    printer.start()
    try:
        assert printer.status() is PrinterStatus.OK
        sim.stop()  # unplugged ...
        sim = PrinterSimulator(SimConfig.from_profile(profile), link=link).start()  # ... back
        statuses = []
        for _ in range(3):  # the first call may still meet the old port
            try:
                statuses.append(printer.status())
            except Exception as exc:
                statuses.append(f"{type(exc).__module__}.{type(exc).__name__}")
        assert statuses[-1] is PrinterStatus.OK, statuses
    finally:
        printer.stop()
        sim.stop()


class _ScriptedClient:
    """Just enough of ApiClient for run_payment: intents move the screens; a bill makes
    the acceptor fail (out of service) before it is taken."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {
            "seq": 1, "screen": "idle", "session": None, "notice": None,
            "acceptor": {"status": "disabled"}, "printer_warning": False,
            "last_payment": {"payment_id": "T0001-00000007", "receipt": "printed"},
        }

    def _set(self, **changes: Any) -> None:
        self.snapshot = {**self.snapshot, **changes, "seq": self.snapshot["seq"] + 1}

    def intent(self, name: str, **_args: Any) -> dict[str, Any]:
        nxt = {"select_provider": "account", "submit_account": "confirm",
               "confirm_account": "cash"}[name]
        session = {"inserted_minor": 0} if nxt == "cash" else None
        self._set(screen=nxt, session=session,
                  acceptor={"status": "idle" if nxt == "cash" else "disabled"})
        return {}

    def feed(self, _rubles: int) -> None:
        self._set(screen="out_of_service", session=None, acceptor={"status": "offline"})

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
        if predicate(self.snapshot):
            return self.snapshot
        raise TimeoutError("scripted client: nothing more will happen")


def test_run_payment_never_reports_the_previous_customers_payment():
    from kiosk.scripted import run_payment

    client = _ScriptedClient()
    try:
        result = run_payment(client, "mts", "9161234567", [100], client.feed,  # type: ignore[arg-type]
                             timeout=1)
    except Exception:
        return
    assert result.get("payment_id") != "T0001-00000007", result


def test_the_scripted_client_reaches_out_of_service():
    """The double above behaves as described (so the test above checks what it says)."""
    client = _ScriptedClient()
    client.intent("select_provider")
    client.intent("submit_account")
    client.intent("confirm_account")
    assert client.snapshot["screen"] == "cash"
    client.feed(100)
    assert client.snapshot["screen"] == "out_of_service"
