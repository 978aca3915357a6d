"""`kiosk desk quarantine | migrate | serve --status`, and a worker that starts while its
database is unreachable."""

from __future__ import annotations

import signal
import time

from sync.cli import desk_main
from sync.desk import describe
from sync.desk_service.db import DeskDB, head_revision
from sync.desk_service.service import StatusFile
from tests.desk.test_serve import Worker, desk_files  # noqa: F401 - fixture
from tests.sync.broker import free_port
from tests.sync.conftest import wait_for


def test_migrate_and_quarantine_listing(db_target, capsys):
    assert desk_main(["--db", db_target, "migrate"]) == 0
    assert f"revision {head_revision()}" in capsys.readouterr().out
    assert desk_main(["--db", db_target, "quarantine"]) == 0
    assert "0 quarantined" in capsys.readouterr().out
    store = DeskDB(db_target)
    with store.transaction() as conn:
        store.quarantine(conn, "kiosk/v1/T1/payments", "T1", "bad_signature",
                         "signature does not verify", b"x" * 5000, 1_767_225_600_000)
    store.close()
    assert desk_main(["--db", db_target, "quarantine"]) == 1
    out = capsys.readouterr().out
    assert "kiosk/v1/T1/payments bad_signature: signature does not verify (5000 bytes" in out


def test_a_quarantined_message_is_one_watch_line():
    line = describe("T1", "quarantine", {"topic": "kiosk/v1/T1/payments",
                                         "reason": "too_large", "detail": "payload of 1 bytes"})
    assert line.startswith("T1 QUARANTINED kiosk/v1/T1/payments: too_large")


def test_status_of_no_worker_and_of_a_stale_one(tmp_path, capsys):
    path = tmp_path / "w.json"
    args = ["serve", "--status", "--status-file", str(path)]
    assert desk_main(args) == 2
    StatusFile(path).write({"state": "ok", "since_ms": 0, "error": None, "held": 0,
                            "updated_ms": int(time.time() * 1000) - 60_000, "interval_s": 1,
                            "broker_connected": True, "database": "sqlite", "messages": 0,
                            "new_payments": 0, "duplicates": 0, "acks_sent": 0,
                            "quarantined": 0, "conflicts": 0, "pid": 1})
    assert desk_main(args) == 2
    assert "is not reporting" in capsys.readouterr().out


def test_a_worker_started_without_its_database_says_degraded_and_waits(
    broker, desk_files, tmp_path  # noqa: F811
):
    url = f"postgresql://kiosk@127.0.0.1:{free_port()}/desk"  # nothing listens there
    worker = Worker("nodb", broker.port, desk_files, url, tmp_path)
    try:
        wait_for(lambda: worker.state().get("state") == "degraded", 30, "degraded status")
        assert desk_main(["serve", "--status", "--status-file", str(worker.status.path)]) == 1
        assert worker.proc.poll() is None  # still waiting for the database
        assert "DEGRADED database postgresql://kiosk@127.0.0.1" in worker.log()
    finally:
        worker.stop(signal.SIGKILL)


def test_an_old_desk_file_is_a_message_not_a_traceback(tmp_path, capsys):
    import sqlite3

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE records (terminal_id TEXT, seq INTEGER)")
    from sync.keys import write_signing_key

    key = tmp_path / "desk.key"
    write_signing_key(key)
    for op in (["conflicts"], ["quarantine"], ["watch", "--for", "0.1"]):
        assert desk_main(["--db", str(old), "--key", str(key), *op]) == 1
        assert "old, unversioned format" in capsys.readouterr().err, op
