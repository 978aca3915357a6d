"""A terminal whose ledger is blocked (it has run before and its ledger is gone) is out
of service, and the desk must hear it: that is exactly when an operator has to act."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger, LedgerIdentityError
from sync.agent import SyncAgent
from tests.core.doubles import DoubleAcceptor, DoublePrinter
from tests.sync.conftest import make_desk, wait_for
from tests.sync.terminal import live_terminal, mqtt_config, terminal_public_key

TID = "B0001"


def test_a_blocked_ledger_still_reports_out_of_service_to_the_desk(broker, desk_key, tmp_path):
    cfg = mqtt_config(broker.port, desk_key)
    first = live_terminal(tmp_path / "t", TID, cfg, agent=False)  # has run: marker written
    config = first.config
    first.stop()
    for suffix in ("", "-wal", "-shm"):
        Path(str(config.paths.ledger) + suffix).unlink(missing_ok=True)

    ledger = Ledger(config.paths.ledger, TID)
    with pytest.raises(LedgerIdentityError):
        ledger.open()
    assert ledger.blocked
    engine = PaymentEngine(config, ledger, DoubleAcceptor(), DoublePrinter())
    engine.start()
    agent = SyncAgent(config, engine, ledger)
    desk = make_desk(broker, desk_key, {TID: terminal_public_key(config)},
                     tmp_path / "desk.sqlite", client_id="desk-blocked").start()
    try:
        agent.start()  # must not refuse: the desk needs this terminal's word now
        wait_for(lambda: desk.states.get(TID, {}).get("state") == "online", 10, "online")
        wait_for(lambda: desk.health.get(TID, {}).get("screen") == "out_of_service", 10,
                 "health out of service")
        health = desk.health[TID]
        assert health["ledger"]["ok"] is False
        assert not config.paths.ledger.exists()  # nothing was created behind the technician
    finally:
        desk.stop()
        agent.stop()
        engine.stop()
        ledger.close()
