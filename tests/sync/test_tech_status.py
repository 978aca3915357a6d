"""The technician's status op knows the MQTT link (connected or not since when, the last
delivery the desk acknowledged) and each device's last error: a real mosquitto, the
minimal desk, an in-process terminal with the real SyncAgent."""

from __future__ import annotations

from drivers.acceptor import AcceptorStatus
from kiosk import service
from tests.sync.conftest import make_desk, wait_for
from tests.sync.terminal import live_terminal, mqtt_config, terminal_public_key


def test_status_shows_the_mqtt_link_and_the_last_errors(own_broker, desk_key, tmp_path):
    tid = "T7001"
    term = live_terminal(tmp_path / "t", tid, mqtt_config(own_broker.port, desk_key))
    desk = make_desk(own_broker, desk_key, {tid: terminal_public_key(term.config)},
                     tmp_path / "desk.sqlite", client_id="desk-tech", beat_s=1.0).start()
    try:
        wait_for(lambda: service.status(term.engine)["sync"]["connected"], 10, "connected")
        sync = service.status(term.engine)["sync"]
        assert sync["enabled"] is True and sync["since_ms"] > 0
        assert sync["last_error"] == ""
        assert set(service.status(term.engine)["last_errors"]) == {
            "acceptor", "printer", "ledger", "mqtt"}

        term.pay(500)  # the desk stores it and acknowledges: a delivery
        wait_for(lambda: service.status(term.engine)["sync"]["last_delivery_ms"], 10,
                 "the desk's ack")
        # the desk's beat: a worker storing this terminal's records is up
        wait_for(lambda: service.status(term.engine)["sync"]["desk_heard_ms"], 10, "a beat")

        term.acceptor.set_status(AcceptorStatus.JAMMED, "0x43 drop cassette jammed")
        wait_for(lambda: service.status(term.engine)["last_errors"]["acceptor"], 5, "fault")
        acc = service.status(term.engine)["last_errors"]["acceptor"]
        assert acc["code"] == "acceptor_fault" and "0x43" in acc["detail"]
        term.acceptor.set_status(AcceptorStatus.DISABLED, "")
        # recovered: the last error stays on the page (with its time) for the technician
        assert service.status(term.engine)["last_errors"]["acceptor"] == acc

        connected_since = sync["since_ms"]
        own_broker.stop()
        wait_for(lambda: not service.status(term.engine)["sync"]["connected"], 15, "lost")
        st = service.status(term.engine)
        assert st["sync"]["since_ms"] >= connected_since
        assert st["sync"]["last_error"] and st["sync"]["last_delivery_ms"]
        assert st["last_errors"]["mqtt"]["code"] == "mqtt_disconnected"
        own_broker.start()
        wait_for(lambda: service.status(term.engine)["sync"]["connected"], 15, "back")
    finally:
        desk.stop()
        term.stop()


def test_last_errors_survive_a_restart_through_the_ledger(tmp_path, desk_key):
    tid = "T7002"
    mqtt = mqtt_config(1, desk_key, enabled=False)
    term = live_terminal(tmp_path / "t", tid, mqtt, agent=False)
    term.acceptor.set_status(AcceptorStatus.CASSETTE_OUT, "0x42 drop cassette out")
    term.stop()
    again = live_terminal(tmp_path / "t", tid, mqtt, agent=False)
    try:
        st = service.status(again.engine)
        assert st["sync"] == {"enabled": False, "connected": False,
                              "since_ms": st["sync"]["since_ms"], "last_delivery_ms": None,
                              "last_error": "", "last_error_ms": None, "desk_heard_ms": None,
                              "link": None}
        acc = st["last_errors"]["acceptor"]
        assert acc["code"] == "acceptor_fault" and "cassette_out" in acc["detail"]
        assert "0x42" in acc["detail"] and acc["at_ms"] > 0
        assert st["last_errors"]["mqtt"] is None
    finally:
        again.stop()


def test_the_newer_of_engine_and_ledger_errors_is_shown(tmp_path, desk_key):
    """A ledger-level event (the ledger writes unclaimed credits itself) newer than the
    engine's remembered fault is the acceptor's last error."""
    term = live_terminal(tmp_path / "t", "T7003", mqtt_config(1, desk_key, enabled=False),
                         agent=False)
    try:
        term.acceptor.set_status(AcceptorStatus.JAMMED, "0x43 jammed")
        first = service.status(term.engine)["last_errors"]["acceptor"]
        assert first["code"] == "acceptor_fault"
        while term.ledger.now_ms() <= first["at_ms"]:  # a later millisecond
            pass
        term.ledger.add_event("unclaimed_credit", "warning", {"amount_minor": 10000})
        newer = service.status(term.engine)["last_errors"]["acceptor"]
        assert newer["code"] == "unclaimed_credit" and newer["at_ms"] > first["at_ms"]
        assert newer["detail"] == "amount_minor=10000"
    finally:
        term.stop()
