"""Retention: health reports and quarantined messages older than their limit are deleted,
in batches, by every worker; nothing else is (sync/desk_service/retention.py)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from sync.cli import desk_main
from sync.desk_service import schema as s
from sync.desk_service.db import DeskDB
from sync.desk_service.retention import BATCH_ROWS, DAY_MS, Retention, prune
from tests.desk.test_serve import Worker, desk_files  # noqa: F401 - fixture
from tests.sync.conftest import wait_for

NOW_MS = 1_800_000_000_000


def _fill(store: DeskDB, terminal: str, health_ages_days: list[float],
          quarantine_ages_days: list[float], now_ms: int = NOW_MS) -> None:
    with store.transaction() as conn:
        if health_ages_days:
            conn.execute(insert(s.health_history), [
                {"terminal_id": terminal, "at_ms": now_ms - int(age * DAY_MS) - i,
                 "received_ms": now_ms - int(age * DAY_MS), "data": "{}"}
                for i, age in enumerate(health_ages_days)])
        if quarantine_ages_days:
            conn.execute(insert(s.quarantine), [
                {"topic": f"kiosk/v1/{terminal}/payments", "terminal_id": terminal,
                 "reason": "malformed", "detail": "test", "size": 1, "sha256": "0" * 64,
                 "payload_head": b"x", "received_ms": now_ms - int(age * DAY_MS)}
                for age in quarantine_ages_days])


def _count(store: DeskDB, table) -> int:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_old_rows_go_in_batches_and_recent_ones_stay(db_target):
    store = DeskDB(db_target)
    try:
        old = BATCH_ROWS + 150  # more than one delete transaction
        _fill(store, "R1", [31.0] * old + [29.0] * 5, [91.0, 200.0, 10.0, 0.0])
        before_terminals = _count(store, s.terminals)
        done = prune(store, Retention(health_days=30, quarantine_days=90), NOW_MS)
        assert (done.health, done.quarantine) == (old, 2)
        assert _count(store, s.health_history) == 5
        assert _count(store, s.quarantine) == 2
        assert _count(store, s.terminals) == before_terminals
        again = prune(store, Retention(health_days=30, quarantine_days=90), NOW_MS)
        assert again.total == 0  # nothing left to do: a second worker's round is a no-op
    finally:
        store.close()


def test_zero_days_keeps_for_ever_and_bad_values_are_refused(tmp_path: Path):
    store = DeskDB(tmp_path / "desk.sqlite")
    try:
        _fill(store, "R2", [3650.0], [3650.0])
        assert prune(store, Retention(health_days=0, quarantine_days=0), NOW_MS).total == 0
        assert _count(store, s.health_history) == 1 and _count(store, s.quarantine) == 1
    finally:
        store.close()
    for bad in (-1, 1.5, True, "30"):
        with pytest.raises(ValueError, match="whole number of days"):
            Retention(health_days=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["x", "-3"])
def test_serve_refuses_a_bad_retention_with_a_message(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        desk_main(["serve", "--keep-health-days", value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--keep-health-days" in err and ("whole number" in err or "must be 0" in err)


def test_a_worker_prunes_and_reports_it(broker, desk_files, tmp_path):  # noqa: F811
    db = str(tmp_path / "desk.sqlite")
    store = DeskDB(db)
    now_ms = int(time.time() * 1000)
    try:
        _fill(store, "R3", [3.0, 3.0, 0.5], [2.0], now_ms=now_ms)
    finally:
        store.close()
    name = "ret-" + uuid.uuid4().hex[:6]
    worker = Worker(name, broker.port, desk_files, db, tmp_path,
                    extra=("--keep-health-days", "1", "--keep-quarantine-days", "0"))
    try:
        wait_for(lambda: worker.state().get("pruned_health") == 2, 30,
                 "the worker pruned the two old health reports")
        assert worker.state()["pruned_quarantine"] == 0  # 0 days: kept for ever
        assert "retention: deleted 2 health reports older than 1 days" in worker.log()
    finally:
        worker.stop()
    store = DeskDB(db)
    try:
        assert _count(store, s.health_history) == 1 and _count(store, s.quarantine) == 1
    finally:
        store.close()
