"""`kiosk desk serve` on a real mosquitto, against SQLite and PostgreSQL: bad input is
quarantined and never stops a worker; several workers share the load and a worker
killed mid-batch loses and doubles nothing; a lost database makes the worker degraded,
acknowledging nothing it could not store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from sync import topics
from sync.agent import signing_key_path
from sync.cli import desk_main
from sync.desk import Desk
from sync.desk_service.db import DeskDB
from sync.desk_service.service import StatusFile
from sync.ed25519 import PrivateKey
from sync.envelope import MAX_ENVELOPE_BYTES, seal
from sync.keys import key_id, public_b64, write_signing_key
from tests.sync.conftest import make_desk, wait_for
from tests.sync.terminal import live_terminal, make_payments, mqtt_config

REPO = Path(__file__).resolve().parents[2]
HEALTH_INTERVAL_S = "0.2"


# -- bad input -------------------------------------------------------------------------
def _batch(terminal: str, records: list[dict], kind: str = "payment") -> dict:
    return {"v": 1, "terminal_id": terminal, "kind": kind, "connection_id": "c",
            "sent_ms": 1, "records": records}


def _record(seq: int, terminal: str) -> dict:
    pid = f"{terminal}-{seq:08d}"
    return {"seq": seq, "ref": pid, "attempt": 1, "data": {
        "id": pid, "kind": "payment", "status": "queued", "provider_id": "mts",
        "account": "9161234567", "inserted_minor": 10_000, "commission_minor": 0,
        "credited_minor": 10_000, "currency": "RUB", "reprocess_count": 0,
        "created_ms": 1_767_225_600_000}}


def test_bad_input_is_quarantined_and_the_worker_goes_on(broker, desk_key, db_target):
    tid = "Q" + uuid.uuid4().hex[:8]
    key = PrivateKey.generate()
    kid = key_id(tid, key.public_key())
    group = "q" + uuid.uuid4().hex[:8]
    desk = make_desk(broker, desk_key, {tid: key.public_key()}, db_target,
                     client_id=f"desk-{group}", persistent=False, share_group=group).start()
    sender = Desk("127.0.0.1", broker.port, desk_key.key, desk_key.kid, {}, ":memory:",
                  client_id=f"sender-{group}", consume=False, persistent=False).start()
    try:
        assert desk.conn.wait_connected(10) and sender.conn.wait_connected(10)
        online = json.dumps({"state": "online", "connection_id": "c1", "at_ms": 1}).encode()

        def subscribed() -> bool:  # the desk sees a state message: it has subscribed
            if tid not in desk.states:
                sender.send_raw(tid, topics.STATE, online)
            return tid in desk.states

        wait_for(subscribed, 10, "the desk subscribed")
        forger = PrivateKey.generate()
        surrogate = (b'{"v":1,"terminal_id":"' + tid.encode() + b'","kind":"payment",'
                     b'"records":[{"seq":7,"ref":"' + tid.encode() + b'-7","data":'
                     b'{"account":"\\ud800"}}]}')
        sends: list[tuple[str, str, bytes]] = [
            (tid, topics.PAYMENTS, b"\xff not json"),
            (tid, topics.PAYMENTS, seal(forger, kid, "payments", _batch(tid, [_record(1, tid)]))),
            (tid, topics.PAYMENTS, b"{" + b" " * (MAX_ENVELOPE_BYTES + 10) + b"}"),
            ("QUNKNOWN", topics.PAYMENTS,
             seal(key, kid, "payments", _batch("QUNKNOWN", [_record(1, "QUNKNOWN")]))),
            (tid, topics.PAYMENTS,
             seal(key, kid, "payments", _batch(tid, [_record(1, tid)], kind="event"))),
            (tid, topics.PAYMENTS,
             seal(key, kid, "payments", _batch(tid, [_record(1, tid), {"seq": "x"}]))),
            (tid, topics.PAYMENTS, seal(key, kid, "payments", surrogate)),
            (tid, topics.STATE, b"\x00\x01 not json"),
            (tid, topics.CMD_RESULT, seal(forger, kid, "cmd_result", {"ok": True})),
            (tid, topics.PAYMENTS, seal(key, kid, "payments", _batch(tid, [_record(2, tid)]))),
        ]
        for terminal, leaf, payload in sends:
            sender.send_raw(terminal, leaf, payload)
        wait_for(lambda: desk.stats.new_payments == 2 and desk.stats.quarantined == 9, 15,
                 "the good records stored and the bad messages quarantined")
        reasons = sorted(q["reason"] for q in desk.store.quarantined())
        assert reasons == sorted(["malformed", "bad_signature", "too_large",
                                  "unknown_terminal", "malformed_batch", "bad_record",
                                  "store_failed", "not_json", "bad_signature"])
        too_large = next(q for q in desk.store.quarantined() if q["reason"] == "too_large")
        assert too_large["size"] > MAX_ENVELOPE_BYTES and len(too_large["payload_head"]) == 4096
        assert [p["payment_id"] for p in desk.store.payments(tid)] == [
            f"{tid}-00000001", f"{tid}-00000002"]
        wait_for(lambda: desk.stats.acks_sent >= 1, 5, "the good records acknowledged")
        assert desk._worker.is_alive()
    finally:
        sender.stop()
        desk.stop()


# -- workers ---------------------------------------------------------------------------
@dataclass
class DeskFiles:
    key: Path
    kid: str
    public_b64: str
    terminal_keys: Path


@pytest.fixture
def desk_files(tmp_path: Path) -> DeskFiles:
    key_path = tmp_path / "desk" / "desk.ed25519.key"
    key = write_signing_key(key_path)
    (tmp_path / "desk" / "terminals").mkdir()
    return DeskFiles(key_path, key_id("desk", key.public_key()), public_b64(key.public_key()),
                     tmp_path / "desk" / "terminals")


class Worker:
    """`python -m kiosk desk … serve` as its own process (killed by its own pid)."""

    def __init__(self, name: str, port: int, files: DeskFiles, db: str, workdir: Path,
                 ack_delay_s: float = 0.0, extra: tuple[str, ...] = (),
                 top: tuple[str, ...] = ()) -> None:
        self.name = name
        self.status = StatusFile(workdir / f"{name}.status.json")
        self.log_path = workdir / f"{name}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "desk", "--host", "127.0.0.1", "--port", str(port),
             "--key", str(files.key), "--terminal-keys", str(files.terminal_keys),
             "--db", db, "--client-id", name, *top, "serve", "--status-file",
             str(self.status.path),
             "--health-interval", HEALTH_INTERVAL_S, "--ack-delay", str(ack_delay_s),
             *extra],
            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log,
            stderr=subprocess.STDOUT)
        log.close()

    def state(self) -> dict:
        return self.status.read() or {}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def _terminals(base: Path, ids: list[str], port: int, files: DeskFiles, n: int,
               **mqtt_kw: object):  # type: ignore[no-untyped-def]
    terms, paid = [], {}
    for tid in ids:
        term = live_terminal(base / tid, tid, mqtt_config(port, files, **mqtt_kw), agent=False)
        from sync.keys import load_or_create_signing_key

        load_or_create_signing_key(signing_key_path(term.config))
        shutil.copy(signing_key_path(term.config).with_suffix(".pub"),
                    files.terminal_keys / f"{tid}.pub")
        terms.append(term)
        paid[tid] = make_payments(term.ledger, n)
    return terms, paid


def _accepted(term, ids: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    return [p for p in ids if term.ledger.get_payment(p)["status"] == "accepted"]


def test_workers_share_the_load_and_a_killed_worker_loses_and_doubles_nothing(
    broker, desk_files, db_target, tmp_path
):
    n = 100
    suffix = uuid.uuid4().hex[:6]
    ids = [f"W{i}{suffix}" for i in range(3)]
    terms, paid = _terminals(tmp_path / "t", ids, broker.port, desk_files, n,
                             resend_after_s=3.0)
    # a worker commits, then waits 2 s before acknowledging: killed in that gap, what it
    # stored is never acknowledged and must come back through another worker
    workers = [Worker(f"w{i}-{suffix}", broker.port, desk_files, db_target, tmp_path,
                      ack_delay_s=2.0) for i in range(3)]
    try:
        wait_for(lambda: all(w.state().get("broker_connected") for w in workers), 30,
                 "the workers connected")
        for term in terms:
            term.start_agent()
        victim = None

        def first_to_store() -> bool:
            nonlocal victim
            for w in workers:
                s = w.state()
                if s.get("new_payments", 0) > 0 and s.get("acks_sent", 0) == 0:
                    victim = w
                    return True
            return False

        wait_for(first_to_store, 30, "a worker holding stored, unacknowledged payments")
        assert victim is not None
        victim.stop(signal.SIGKILL)  # mid-batch: stored, not acknowledged
        survivors = [w for w in workers if w is not victim]
        for term, tid in zip(terms, ids, strict=True):
            wait_for(lambda t=term, i=tid: len(_accepted(t, paid[i])) == n, 90,
                     f"every payment of {tid} acknowledged")
        for w in survivors:
            w.stop()
        store = DeskDB(db_target)
        try:
            held = store.payments()
            keys = [(p["terminal_id"], p["payment_id"], p["reprocess_count"]) for p in held]
            assert len(keys) == len(set(keys)) == 3 * n
            assert {p["payment_id"] for p in held} == {p for t in ids for p in paid[t]}
        finally:
            store.close()
        final = [w.state() for w in survivors]
        assert all(s["state"] == "stopped" and s["quarantined"] == 0 for s in final)
        assert sum(s["duplicates"] for s in final) >= 1  # the victim's rows came back
        assert sum(s["new_payments"] for s in final) + victim_stored(victim) == 3 * n
    finally:
        for w in workers:
            w.stop(signal.SIGKILL)
        for term in terms:
            term.stop()


def victim_stored(victim: Worker) -> int:
    """What the killed worker had committed (its last status)."""
    return int(victim.state().get("new_payments", 0))


def test_a_partition_worker_killed_mid_batch_is_taken_over_and_gets_its_share_back(
    broker, desk_files, db_target, tmp_path
):
    """MQTT 3.1.1, `--partition K/2 --takeover-after 2`: worker 1 is SIGKILLed holding
    stored, unacknowledged payments; worker 0 takes partition 1 and every payment is
    acknowledged, stored once; worker 1 started again gets partition 1 back and stores its
    terminals' next payments (sync/desk_service/takeover.py)."""
    import zlib

    n = 60
    suffix = uuid.uuid4().hex[:6]
    ids: list[str] = []
    i = 0
    while {zlib.crc32(t.encode()) % 2 for t in ids} != {0, 1} or len(ids) < 4:
        ids.append(f"K{i}{suffix}")
        i += 1
    part1 = [t for t in ids if zlib.crc32(t.encode()) % 2 == 1]
    terms, paid = _terminals(tmp_path / "t", ids, broker.port, desk_files, n,
                             protocol="3.1.1", resend_after_s=2.0)

    def worker(k: int, tag: str) -> Worker:
        return Worker(f"p{k}{tag}-{suffix}", broker.port, desk_files, db_target, tmp_path,
                      ack_delay_s=1.0, top=("--protocol", "3.1.1", "--partition", f"{k}/2",
                                            "--takeover-after", "2"))

    w0, w1 = worker(0, "a"), worker(1, "a")
    back: Worker | None = None
    try:
        wait_for(lambda: w0.state().get("broker_connected") and w1.state().get(
            "broker_connected"), 30, "the workers connected")
        assert w0.state()["share"] == "0/2" and w1.state()["share"] == "1/2"
        for term in terms:
            term.start_agent()
        wait_for(lambda: w1.state().get("new_payments", 0) > 0
                 and w1.state().get("acks_sent", 0) == 0, 30,
                 "worker 1 holding stored, unacknowledged payments")
        w1.stop(signal.SIGKILL)
        wait_for(lambda: w0.state().get("share") == "0/2,1/2", 20, "partition 1 taken over")
        for term, tid in zip(terms, ids, strict=True):
            wait_for(lambda t=term, i=tid: len(_accepted(t, paid[i])) == n, 90,
                     f"every payment of {tid} acknowledged")

        back = worker(1, "b")
        wait_for(lambda: w0.state().get("share") == "0/2", 20, "partition 1 handed back")
        assert back.state()["share"] == "1/2"
        more = {tid: make_payments(term.ledger, 5) for term, tid in zip(terms, ids,
                                                                         strict=True)}
        for term, tid in zip(terms, ids, strict=True):
            wait_for(lambda t=term, i=tid: len(_accepted(t, more[i])) == 5, 60,
                     f"the next payments of {tid} acknowledged")
        wait_for(lambda: back.state().get("new_payments") == 5 * len(part1), 10,
                 "the returned worker's status")
        w0.stop()
        back.stop()
        store = DeskDB(db_target)
        try:
            held = store.payments()
            keys = [(p["terminal_id"], p["payment_id"], p["reprocess_count"]) for p in held]
            assert len(keys) == len(set(keys)) == len(ids) * (n + 5)
            assert {p["payment_id"] for p in held} == {
                p for t in ids for p in paid[t] + more[t]}
        finally:
            store.close()
        assert "taking over partition 1/2" in w0.log_path.read_text(errors="replace")
        assert "handed back" in w0.log_path.read_text(errors="replace")
    finally:
        for w in (w0, w1, back):
            if w is not None:
                w.stop(signal.SIGKILL)
        for term in terms:
            term.stop()


def test_a_lost_database_degrades_the_worker_and_acks_nothing_unstored(
    broker, desk_files, pg, tmp_path
):
    url = pg.new_database()
    tid = "P" + uuid.uuid4().hex[:8]
    (term,), paid = _terminals(tmp_path / "t", [tid], broker.port, desk_files, 10,
                               resend_after_s=2.0)
    worker = Worker(f"pgw-{tid}", broker.port, desk_files, url, tmp_path)
    try:
        wait_for(lambda: worker.state().get("broker_connected"), 30, "worker connected")
        term.start_agent()
        wait_for(lambda: len(_accepted(term, paid[tid])) == 10, 30, "the first 10 acked")
        pg.stop()
        later = make_payments(term.ledger, 10)
        wait_for(lambda: worker.state().get("state") == "degraded"
                 and worker.state().get("held", 0) > 0, 30, "the worker degraded")
        status_args = ["serve", "--status", "--status-file", str(worker.status.path)]
        assert desk_main(status_args) == 1
        assert _accepted(term, later) == []  # nothing acknowledged that is not stored
        assert "desk DEGRADED: database unavailable" in worker.log()
        pg.start()
        wait_for(lambda: len(_accepted(term, later)) == 10, 60, "the later 10 acked")
        wait_for(lambda: worker.state().get("state") == "ok", 10, "the worker ok again")
        assert desk_main(status_args) == 0
        worker.stop()
        store = DeskDB(url)
        try:
            held = [p["payment_id"] for p in store.payments(tid)]
            assert sorted(held) == sorted(paid[tid] + later)  # each once
        finally:
            store.close()
        assert "desk OK again: database back" in worker.log()
        assert json.loads(worker.status.path.read_text())["outages"] == 1
    finally:
        if pg.proc is None:
            pg.start()
        worker.stop(signal.SIGKILL)
        term.stop()
