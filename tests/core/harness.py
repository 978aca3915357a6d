"""An engine with a real ledger file, device doubles and a manual clock."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from kiosk.config import Config
from kiosk.engine import PaymentEngine, PrinterWorker
from kiosk.ledger import Ledger
from tests.conftest import ManualClock
from tests.core.doubles import DoubleAcceptor, DoublePrinter

MTS_ACCOUNT = "9161234567"


@dataclass
class Terminal:
    engine: PaymentEngine
    ledger: Ledger
    acceptor: DoubleAcceptor
    printer: DoublePrinter
    clock: ManualClock
    snapshots: list[dict[str, Any]]
    printer_worker: PrinterWorker  # the engine's printer thread, passed in

    def drain(self) -> None:
        """Wait until every queued print job has run."""
        self.printer_worker.drain()

    def intent(self, name: str, **args: Any) -> Any:
        return self.engine.intent(name, args)

    def to_cash(self, provider: str = "mts", account: str = MTS_ACCOUNT) -> None:
        self.intent("select_provider", provider_id=provider)
        self.intent("submit_account", account=account)
        self.intent("confirm_account")
        assert self.engine.screen.value == "cash"

    def pay(self, *bills: int, provider: str = "mts") -> str:
        self.to_cash(provider)
        for b in bills:
            self.acceptor.insert(b)
        self.intent("pay")
        self.drain()
        assert self.engine.last_payment is not None
        payment_id = self.engine.last_payment["payment_id"]
        self.intent("done")
        return payment_id

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.advance(seconds)
        self.engine.tick()

    def restart(self, run_id: str = "run2") -> Terminal:
        """A new process on the same ledger file (the old one is simply abandoned)."""
        return make_terminal(self.engine.config, self.clock, run_id=run_id, printer=self.printer)


def make_terminal(
    config: Config, clock: ManualClock, run_id: str = "run1", printer: DoublePrinter | None = None
) -> Terminal:
    ledger = Ledger(
        config.paths.ledger, config.terminal.id, clock=lambda: clock() + 1.7e9, run_id=run_id
    )
    ledger.open()
    acceptor = DoubleAcceptor(run_id=run_id)
    printer = printer or DoublePrinter()
    worker = PrinterWorker()
    engine = PaymentEngine(config, ledger, acceptor, printer, clock=clock, printer_worker=worker)
    snapshots: list[dict[str, Any]] = []
    engine.subscribe(snapshots.append)
    engine.start()
    term = Terminal(engine, ledger, acceptor, printer, clock, snapshots, worker)
    term.drain()
    return term


def ledger_rows(ledger: Ledger, sql: str) -> list[tuple]:
    """Rows read on a connection of the test's own: the ledger's pooled connection may be
    in use by the engine's printer thread (a receipt being built) at this very moment."""
    conn = sqlite3.connect(f"file:{ledger.path}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in conn.execute(sql)]
    finally:
        conn.close()
