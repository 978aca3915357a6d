"""The technician's status carries the broker link as the sync agent sees it: which node
(of a cluster's list), which MQTT level, since when, and why it is down in Russian and
English. Real mosquitto, in-process terminal with the real SyncAgent."""

from __future__ import annotations

from kiosk import service
from tests.sync.broker import free_port
from tests.sync.conftest import wait_for
from tests.sync.terminal import live_terminal, mqtt_config


def _link(term) -> dict:  # type: ignore[no-untyped-def]
    return service.status(term.engine)["sync"]["link"] or {}


def test_status_names_the_broker_node_protocol_and_why_it_is_down(own_broker, desk_key,
                                                                  tmp_path):
    dead = free_port()  # a cluster node that is down: first in the list for this terminal
    cfg = mqtt_config(0, desk_key, protocol="3.1.1",
                      hosts=(("127.0.0.1", dead), ("127.0.0.1", own_broker.port)))
    term = live_terminal(tmp_path / "t", "T7101", cfg)
    try:
        good = f"127.0.0.1:{own_broker.port}"
        wait_for(lambda: _link(term).get("state") == "connected", 20, "the link reported")
        link = _link(term)
        assert (link["endpoint"], link["protocol"], link["problem"]) == (good, "3.1.1", "")
        assert link["since_ms"] > 0 and link["text_en"] == link["text_ru"] == ""
        own_broker.stop()
        wait_for(lambda: _link(term).get("state") == "down", 20, "the link down")
        link = _link(term)
        assert link["problem"] in ("lost", "unreachable"), link
        assert link["endpoint"] in (good, f"127.0.0.1:{dead}")
        assert link["text_en"] and link["text_ru"] and link["text_en"] != link["text_ru"]
        assert link["detail"]  # the library's own words, for support
    finally:
        term.stop()
