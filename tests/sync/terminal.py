"""An in-process terminal for the sync tests: real ledger, real engine with device
doubles and a real clock (commands carry wall-clock times), and the real SyncAgent."""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.printer import ReceiptPrinter
from kiosk.catalog import DEMO_CATALOG
from kiosk.config import Config, MqttConfig
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger
from sync.agent import SyncAgent, signing_key_path
from sync.keys import load_or_create_signing_key
from tests.conftest import config_in
from tests.core.doubles import DoubleAcceptor, DoublePrinter
from tests.sync.conftest import wait_for

MTS_ACCOUNT = "9161234567"


def mqtt_config(port: int, desk_key: Any, **kw: Any) -> MqttConfig:
    base = dict(
        enabled=True,
        host="127.0.0.1",
        port=port,
        desk_keys=((desk_key.kid, desk_key.public_b64),),
        reconnect_min_s=0.2,
        reconnect_max_s=1.0,
        health_interval_s=60,
        health_min_interval_s=0.2,
        resend_after_s=5.0,
    )
    base.update(kw)
    return MqttConfig(**base)


def terminal_config(tmp: Path, terminal_id: str, mqtt: MqttConfig) -> Config:
    cfg = config_in(tmp)
    return dataclasses.replace(
        cfg, terminal=dataclasses.replace(cfg.terminal, id=terminal_id), mqtt=mqtt
    )


def terminal_public_key(config: Config):  # type: ignore[no-untyped-def]
    key, _ = load_or_create_signing_key(signing_key_path(config))
    return key.public_key()


@dataclass
class LiveTerminal:
    config: Config
    ledger: Ledger
    engine: PaymentEngine
    acceptor: DoubleAcceptor
    printer: Any  # a DoublePrinter, or the ReceiptPrinter a test brought
    agent: SyncAgent | None = None
    snapshots: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def start_agent(self) -> SyncAgent:
        self.agent = SyncAgent(self.config, self.engine, self.ledger)
        self.agent.start()
        return self.agent

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
        self.engine.stop()
        self.ledger.close()

    def drain_printer(self) -> None:
        self.engine.printer_worker.drain()

    def pay(self, *bills: int, provider: str = "mts", account: str = MTS_ACCOUNT) -> str:
        e = self.engine
        e.intent("select_provider", {"provider_id": provider})
        e.intent("submit_account", {"account": account})
        e.intent("confirm_account", {})
        for b in bills:
            self.acceptor.insert(b)
        e.intent("pay", {})
        self.drain_printer()
        assert e.last_payment is not None
        pid = e.last_payment["payment_id"]
        e.intent("done", {})
        return str(pid)


def live_terminal(
    tmp: Path, terminal_id: str, mqtt: MqttConfig, agent: bool = True,
    printer: ReceiptPrinter | None = None,
) -> LiveTerminal:
    """`printer`: e.g. the real EscposPrinter on a PrinterSimulator (default a double)."""
    config = terminal_config(tmp, terminal_id, mqtt)
    ledger = Ledger(config.paths.ledger, terminal_id)
    ledger.open()
    acceptor = DoubleAcceptor()
    printer = printer if printer is not None else DoublePrinter()
    engine = PaymentEngine(config, ledger, acceptor, printer)
    term = LiveTerminal(config, ledger, engine, acceptor, printer)
    engine.subscribe(term.snapshots.append)
    engine.start()
    term.drain_printer()
    if agent:
        term.start_agent()
    return term


def make_payments(ledger: Ledger, n: int, amount_minor: int = 10_000) -> list[str]:
    """n finished payments straight through the Ledger API (as the engine writes them)."""
    mts = DEMO_CATALOG.get("mts")
    assert mts is not None
    out = []
    for i in range(n):
        sid = ledger.open_session("mts", MTS_ACCOUNT, "RUB")
        esc = ledger.record_escrow(sid, amount_minor, "RUB", 2)
        ledger.record_stacked(f"bulk:{i}:{sid}", amount_minor, "RUB", 2, False, esc)
        pid = ledger.finish_session(sid, mts.commission)
        assert pid is not None
        out.append(pid)
    return out


def unacked(t: LiveTerminal) -> int:
    """Outbox records the desk has not acknowledged yet, read from the ledger file."""
    with sqlite3.connect(t.config.paths.ledger) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE acked_ms IS NULL").fetchone()[0])


def desk_payment_counts(db: Path) -> tuple[int, int]:
    """(rows, distinct terminal/payment ids) in a desk database: equal means none twice."""
    with sqlite3.connect(db) as c:
        rows, distinct = c.execute(
            "SELECT count(*), count(DISTINCT terminal_id || '/' || payment_id) FROM payments"
        ).fetchone()
    return int(rows), int(distinct)


@dataclass
class PayingFleet:
    """Terminals with finished payments queued, what the desk must end up with, and the
    terminals' public keys for it."""

    terminals: list[LiveTerminal]
    expected: set[tuple[str, str]]
    keys: dict[str, Any]

    def settle(self, db: Path, desk_s: float = 120, outbox_s: float = 60) -> None:
        """Wait for every expected payment at the desk, then every outbox acknowledged."""
        wait_for(lambda: desk_payment_counts(db)[1] >= len(self.expected), desk_s,
                 "every payment at the desk")
        wait_for(lambda: all(unacked(t) == 0 for t in self.terminals), outbox_s,
                 "every outbox acknowledged")

    def assert_stored_once(self, db: Path, stored: list[dict[str, Any]]) -> None:
        """0 lost, 0 stored twice: the desk's rows are exactly the payments made."""
        rows, distinct = desk_payment_counts(db)
        assert rows == distinct == len(self.expected), (rows, distinct, len(self.expected))
        assert {(p["terminal_id"], p["payment_id"]) for p in stored} == self.expected


def paying_fleet(tmp: Path, prefix: str, count: int, per_terminal: int,
                 mqtt: MqttConfig) -> PayingFleet:
    """`count` terminals (ids prefix000, prefix001, ...), agents not started yet, each
    with `per_terminal` finished payments in its outbox."""
    terms = [live_terminal(tmp / f"t{i}", f"{prefix}{i:03d}", mqtt, agent=False)
             for i in range(count)]
    expected: set[tuple[str, str]] = set()
    for t in terms:
        expected |= {(t.config.terminal.id, p) for p in make_payments(t.ledger, per_terminal)}
    keys = {t.config.terminal.id: terminal_public_key(t.config) for t in terms}
    return PayingFleet(terms, expected, keys)
