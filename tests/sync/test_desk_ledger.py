"""kiosk/ledger/desk.py: acknowledgement by sequence (M8), at-most-once desk commands,
re-processing, desk payment statuses and config versions, on a real SQLite ledger."""

from __future__ import annotations

import json

import pytest

from kiosk.ledger import Ledger, LedgerTx, outbox
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
    assert outbox.raw_by_seq(ledger, [s1]) == []
    assert [m.ref for m in outbox.raw_by_seq(ledger, [_seq_of(ledger, p2)])] == [p2]


def test_command_executes_at_most_once_and_keeps_the_seq(ledger):
    calls = []

    def action(tx: LedgerTx) -> dict[str, int]:
        calls.append(tx.now_ms)
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
        d.reprocess_action(p1, "9160000000", "c2", "wrong digit"),
    )
    # queued: the desk does not have it yet -> refused, recorded, nothing changed
    assert fresh and res == {**res, "ok": False, "error": "not_allowed"}
    assert ledger.get_payment(p1) == before


def test_reprocess_same_id_count_plus_one_new_outbox_message(ledger):
    (p1,) = make_payments(ledger, 1)
    d.acknowledge_seqs(ledger, [_seq_of(ledger, p1)])
    _, res = d.execute_command(
        ledger, "c3", "reprocess", "desk1", 2,
        d.reprocess_action(p1, "9160000000", "c3", "customer called"),
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
    assert d.apply_payment_status(ledger, "nope", "processed", None, 0, 1) == "unknown_payment"
    assert d.apply_payment_status(ledger, p1, "accepted", None, 0, 1) == "not_allowed"
    assert d.apply_payment_status(ledger, p1, "failed", "provider down", 0, 1) == "applied"
    assert d.apply_payment_status(ledger, p1, "failed", "provider down", 0, 1) == "unchanged"
    assert d.apply_payment_status(ledger, p1, "processed", None, 1, 2) == "not_allowed"
    d.acknowledge_seqs(ledger, [_seq_of(ledger, p1)])
    d.execute_command(
        ledger, "c4", "reprocess", "desk1", 3,
        d.reprocess_action(p1, "9160000000", "c4", ""),
    )
    assert d.apply_payment_status(ledger, p1, "failed", None, 0, 2) == "stale"
    assert d.apply_payment_status(ledger, p1, "processed", None, 1, 3) == "applied"
    p = ledger.get_payment(p1)
    assert p["status"] == "processed"
    assert [h["status"] for h in p["history"]][-3:] == ["failed", "reprocessed", "processed"]


def test_an_old_status_replayed_after_a_newer_one_changes_nothing(ledger):
    (p1,) = make_payments(ledger, 1)
    d.acknowledge_seqs(ledger, [_seq_of(ledger, p1)])
    assert d.apply_payment_status(ledger, p1, "failed", "timeout", 0, 1) == "applied"
    assert d.apply_payment_status(ledger, p1, "processed", None, 0, 2) == "applied"
    # the signed "failed" v1 again, after "processed" v2: stale, ignored
    assert d.apply_payment_status(ledger, p1, "failed", "timeout", 0, 1) == "stale_version"
    assert ledger.get_payment(p1)["status"] == "processed"
    assert d.status_version(ledger, p1) == 2
    assert len(d.status_version_name(p1)) <= 32  # fits counters.name


def test_reprocess_retried_runs_once(ledger):
    (p1,) = make_payments(ledger, 1)
    d.acknowledge_seqs(ledger, [_seq_of(ledger, p1)])
    # an operator retries the same correction: two commands, two command ids
    _, first = d.execute_command(ledger, "r1", "reprocess", "desk1", 1,
                                 d.reprocess_action(p1, "9160000000", "r1", "typo"))
    _, again = d.execute_command(ledger, "r2", "reprocess", "desk1", 2,
                                 d.reprocess_action(p1, "9160000000", "r2", "typo"))
    assert first["ok"] and first["reprocess_count"] == 1
    assert again["ok"] and again["reprocess_count"] == 1 and again["already"] is True
    assert ledger.get_payment(p1)["reprocess_count"] == 1
    assert [m.ref for m in outbox.pending(ledger)] == [p1]  # one new message, not two
    # with the count the desk saw: the same retry is recognised, a stale one refused
    _, same = d.execute_command(ledger, "r3", "reprocess", "desk1", 3,
                                d.reprocess_action(p1, "9160000000", "r3", "", 0))
    assert same["ok"] and same["already"] is True
    _, stale = d.execute_command(ledger, "r4", "reprocess", "desk1", 4,
                                 d.reprocess_action(p1, "9161111111", "r4", "", 0))
    assert stale["ok"] is False and stale["error"] == "stale_count" and stale["message"]
    _, second = d.execute_command(ledger, "r5", "reprocess", "desk1", 5,
                                  d.reprocess_action(p1, "9161111111", "r5", "", 1))
    assert second["ok"] and second["reprocess_count"] == 2


def _unclaimed(ledger, amount=50_000):  # type: ignore[no-untyped-def]
    sid = ledger.open_session("mts", "9161234567", "RUB")
    ledger.abandon_session(sid)
    return ledger.record_stacked(f"k{amount}", amount, "RUB", 2, False, None).unclaimed_id


def test_unclaimed_records_take_no_desk_status(ledger):
    rid = _unclaimed(ledger, 10_000)
    assert d.apply_payment_status(ledger, rid, "processed", None, 0, 1) == "not_allowed"


def test_an_unclaimed_credit_becomes_a_payment_exactly_once(ledger):
    rid = _unclaimed(ledger)
    fee = 1000

    def claim(cid, account="9160000000"):  # type: ignore[no-untyped-def]
        return d.execute_command(
            ledger, cid, "reprocess_unclaimed", "desk1", int(cid[1:]),
            d.claim_unclaimed_action(rid, "mts", account, cid, "froze", lambda a: fee),
        )[1]

    res = claim("u1")
    assert res["ok"] and res["record_id"] == rid and res["credited_minor"] == 49_000
    pid = res["payment_id"]
    new = ledger.get_payment(pid)
    assert (new["kind"], new["status"], new["provider_id"], new["account"]) == (
        "payment", "queued", "mts", "9160000000")
    assert (new["inserted_minor"], new["commission_minor"]) == (50_000, 1000)  # M9
    assert rid in new["note"]
    rec = ledger.get_payment(rid)
    assert rec["status"] == "reprocessed" and json.loads(rec["history"][-1]["detail"])[
        "to_payment"] == pid
    msgs = {m.ref: m.payload for m in outbox.pending(ledger)}
    assert msgs[pid]["from_unclaimed"] == rid and msgs[pid]["bills"][0]["amount_minor"] == 50_000
    assert msgs[rid]["claimed_by"] == pid and msgs[rid]["reprocess_count"] == 1
    # the retry reports the first; another target is refused; nothing more is created
    again = claim("u2")
    assert again["ok"] and again["already"] is True and again["payment_id"] == pid
    other = claim("u3", "9169999999")
    assert other["ok"] is False and other["error"] == "already_claimed"
    assert sum(1 for p in ledger.list_payments(100) if p["kind"] == "payment") == 1
    # a payment is not an unclaimed credit
    _, bad = d.execute_command(
        ledger, "u4", "reprocess_unclaimed", "desk1", 9,
        d.claim_unclaimed_action(pid, "mts", "9160000000", "u4", "", lambda a: 0))
    assert bad["error"] == "not_allowed"


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
