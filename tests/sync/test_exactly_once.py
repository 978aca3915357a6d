"""Acceptance: 1,000 payments made while the broker is down reach a desk consumer exactly
once — plain, with the broker restarted mid-drain, and with the agent SIGKILLed
mid-drain. Real mosquitto, the real daemon (`python -m kiosk run`) with its sync agent,
real SQLite ledgers; the payments are written through the Ledger API to save time."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from kiosk.ledger import Ledger
from sync.keys import write_signing_key
from tests.core.daemon import Core, write_config
from tests.sync.broker import Broker
from tests.sync.conftest import make_desk, wait_for
from tests.sync.terminal import make_payments

N = 1000
TERMINAL = "T0001"


def _mqtt_toml(port: int, desk_key) -> str:  # type: ignore[no-untyped-def]
    return f"""
[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
inflight = 50
batch = 10
resend_after_s = 2.0
reconnect_min_s = 0.2
reconnect_max_s = 1.0
health_min_interval_s = 0.5
{desk_key.toml()}"""


@pytest.fixture(scope="module")
def offline_ledger(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A ledger holding N payments none of which has reached the desk, built once."""
    path = tmp_path_factory.mktemp("template") / "ledger.sqlite"
    ledger = Ledger(path, TERMINAL)
    ledger.open()
    expected = make_payments(ledger, N)
    ledger.close()  # the last connection checkpoints the WAL into the file
    return path, expected


def _unacked(ledger_path: Path) -> int:
    with sqlite3.connect(ledger_path) as db:
        return db.execute("SELECT count(*) FROM outbox WHERE acked_ms IS NULL").fetchone()[0]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["none", "broker_restart", "agent_kill"])
def test_thousand_payments_made_offline_arrive_exactly_once(
    tmp_path, desk_key, offline_ledger, fault
):
    broker = Broker(tmp_path / "mosquitto")  # not started: the broker is down
    workdir = tmp_path / "core"
    workdir.mkdir()
    core = Core(write_config(workdir, _mqtt_toml(broker.port, desk_key)), workdir)
    pub = write_signing_key(workdir / "data" / "keys" / "terminal.ed25519.key").public_key()

    template, expected = offline_ledger
    shutil.copyfile(template, core.ledger)

    t0 = time.monotonic()
    core.start()  # the agent starts with no broker: it retries with jittered backoff
    desk = None
    try:
        broker.start()
        desk = make_desk(
            broker, desk_key, {TERMINAL: pub}, tmp_path / "desk.sqlite", ack_delay_s=0.05
        ).start()

        def at_desk() -> int:
            return desk.stats.new_payments

        if fault != "none":
            wait_for(lambda: at_desk() >= 150, 30, "the drain to start")
            assert at_desk() < N, "the drain finished before the fault: not mid-drain"
            if fault == "broker_restart":
                broker.kill()
                broker.start()
            else:
                online = desk.states[TERMINAL]
                assert online["state"] == "online"
                core.kill()  # the broker publishes the Last Will: offline, same connection
                wait_for(lambda: desk.states[TERMINAL]["state"] == "offline", 10, "the Will")
                assert desk.states[TERMINAL]["reason"] == "lost"
                assert desk.states[TERMINAL]["connection_id"] == online["connection_id"]
                core.start()
        wait_for(lambda: at_desk() >= N, 90, f"{N} payments at the desk")
        wait_for(lambda: _unacked(core.ledger) == 0, 30, "the outbox to empty")

        rows = desk.store.payments(TERMINAL)
        ids = [r["payment_id"] for r in rows]
        assert len(ids) == len(set(ids)) == N  # each exactly once
        assert set(ids) == set(expected)
        assert desk.stats.new_payments == N
        assert all(r["data"]["inserted_minor"] == 10_000 for r in rows)
        with sqlite3.connect(core.ledger) as db:
            statuses = dict(db.execute("SELECT status, count(*) FROM payments GROUP BY status"))
        assert statuses == {"accepted": N}
        print(
            f"{fault}: {time.monotonic() - t0:.1f} s, {desk.stats.records} deliveries, "
            f"{desk.stats.duplicates} duplicates "
            f"de-duplicated, {desk.stats.acks_sent} acks"
        )
    finally:
        if desk is not None:
            desk.stop()
        core.stop()
        broker.stop()
