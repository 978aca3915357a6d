"""kiosk/ledger/desk.py: acknowledgement by sequence (M8), at-most-once desk commands,
re-processing, desk payment statuses and config versions, on a real SQLite ledger."""

from __future__ import annotations

import json

import pytest

from kiosk.ledger import Ledger, outbox
from kiosk.ledger import desk as d
from tests.sync.terminal import make_payments


@pytest.fixture
def ledger(tmp_path):
    lg = Ledger(tmp_path / "l.sqlite", "T1")
    lg.open()
    yield lg
    lg.close()


def _seq_of(ledger, payment_id):  # type: ignore[no-untyped-def]
    return next(m.id for m in outbox.pending(ledger, 1000) if m.ref == payment_id)


def test_ack_by_seq_is_the_only_way_out_and_idempotent(ledger):
    p1, p2 = make_payments(ledger, 2)
    s1 = _seq_of(ledger, p1)
    outbox.mark_sent(ledger, [s1])  # PUBACK: still in the outbox (M8)
    assert {m.ref for m in outbox.pending(ledger)} == {p1, p2}
    assert ledger.get_payment(p1)["status"] == "sent"
    assert d.acknowledge_seqs(ledger, [s1]) == 1
    assert d.acknowledge_seqs(ledger, [s1]) == 0  # a repeated ack changes nothing
    assert [m.ref for m in outbox.pending(ledger)] == [p2]
    got = ledger.get_payment(p1)
    assert got["status"] == "accepted"
    assert [h["status"] for h in got["history"]] == ["confirmed", "queued", "accepted"]
    assert d.messages_by_seq(ledger, [s1]) == []


def test_command_executes_at_most_once_and_keeps_the_seq(ledger):
    calls = []

    def action(conn, now):  # type: ignore[no-untyped-def]
        calls.append(now)
        return {"x": 1}

    fresh, res = d.execute_command(ledger, "c1", "enable", "desk1", 7, action)
    assert fresh and res["ok"] and res["x"] == 1
    again, res2 = d.execute_command(ledger, "c1", "enable", "desk1", 7, action)
    assert not again and res2 == res and len(calls) == 1
    assert d.last_command_seq(ledger, "desk1") == 7
    assert d.last_command_seq(ledger, "desk2") == 0
    assert d.command_record(ledger, "c1").kind == "enable"


def test_refused_action_leaves_no_half_change(ledger):
    (p1,) = make_payments(ledger, 1)
    before = ledger.get_payment(p1)
    fresh, res = d.execute_command(
        ledger, "c2", "reprocess", "desk1", 1,
        d.reprocess_action(ledger, p1, "9160000000", "c2", "wrong digit"),
    )
    # queued: the desk does not have it yet -> refused, recorded, nothing changed
    assert fresh and res == {**res, "ok": False, "error": "not_allowed"}
    assert ledger.get_payment(p1) == before


def test_reprocess_same_id_count_plus_one_new_outbox_message(ledger):
    (p1,) = make_payments(ledger, 1)
    d.acknowledge_seqs(ledger, [_seq_of(ledger, p1)])
    _, res = d.execute_command(
        ledger, "c3", "reprocess", "desk1", 2,
        d.reprocess_action(ledger, p1, "9160000000", "c3", "customer called"),
    )
    assert res["ok"] and res["reprocess_count"] == 1
    p = ledger.get_payment(p1)
    assert (p["status"], p["account"], p["reprocess_count"]) == ("reprocessed", "9160000000", 1)
    detail = json.loads(p["history"][-1]["detail"])
    assert detail["from_account"] == "9161234567" and detail["to_account"] == "9160000000"
    (msg,) = outbox.pending(ledger)
    assert msg.ref == p1 and msg.id == res["outbox_seq"]
    assert msg.payload["account"] == "9160000000" and msg.payload["reprocess_count"] == 1
    d.acknowledge_seqs(ledger, [msg.id])
    assert ledger.get_payment(p1)["status"] == "reprocessed"  # until the desk reports


def test_payment_status_transitions(ledger):
    (p1,) = make_payments(ledger, 1)
    assert d.apply_payment_status(ledger, "nope", "processed", None, 0) == "unknown_payment"
    assert d.apply_payment_status(ledger, p1, "accepted", None, 0) == "not_allowed"
    assert d.apply_payment_status(ledger, p1, "failed", "provider down", 0) == "applied"
    assert d.apply_payment_status(ledger, p1, "failed", "provider down", 0) == "unchanged"
    assert d.apply_payment_status(ledger, p1, "processed", None, 1) == "not_allowed"
    d.acknowledge_seqs(ledger, [_seq_of(ledger, p1)])
    d.execute_command(
        ledger, "c4", "reprocess", "desk1", 3,
        d.reprocess_action(ledger, p1, "9160000000", "c4", ""),
    )
    assert d.apply_payment_status(ledger, p1, "failed", None, 0) == "stale"
    assert d.apply_payment_status(ledger, p1, "processed", None, 1) == "applied"
    p = ledger.get_payment(p1)
    assert p["status"] == "processed"
    assert [h["status"] for h in p["history"]][-3:] == ["failed", "reprocessed", "processed"]


def test_unclaimed_records_take_no_desk_status(ledger):
    sid = ledger.open_session("mts", "9161234567", "RUB")
    ledger.abandon_session(sid)
    out = ledger.record_stacked("k", 10_000, "RUB", 2, False, None)
    assert d.apply_payment_status(ledger, out.unclaimed_id, "processed", None, 0) == "not_allowed"


def test_config_versions_and_desk_settings(ledger):
    assert d.current_config(ledger) is None
    assert d.record_config(ledger, 1, "a" * 64, {"version": 1, "support_phone": "8 800 1"})
    assert not d.record_config(ledger, 1, "b" * 64, {"version": 1})
    assert d.current_config(ledger) == (1, "a" * 64)
    s = d.desk_settings(ledger)
    assert (s["config_version"], s["support_phone"], s["disabled"]) == (1, "8 800 1", None)
    d.execute_command(ledger, "p", "set_support_phone", "k", 1, None, {"support_phone": "8 800 2"})
    d.execute_command(ledger, "x", "disable", "k", 2, None, {"reason": "audit"})
    s = d.desk_settings(ledger)
    assert (s["support_phone"], s["disabled"]) == ("8 800 2", "audit")
    d.execute_command(ledger, "y", "enable", "k", 3)
    assert d.desk_settings(ledger)["disabled"] is None
