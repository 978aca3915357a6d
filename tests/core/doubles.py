"""Test doubles at the two device interfaces (engine-level tests only).

DoubleAcceptor behaves like a driver towards the listener: escrow → decision → stacked →
ACK only if the listener returned. Real drivers are tested against pty simulators.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import dataclass, field

from drivers.acceptor import (
    AcceptorListener,
    AcceptorStatus,
    Bill,
    DeviceInfo,
    EscrowDecision,
    StackedBill,
    StackOrigin,
)
from drivers.layout import render_plain
from drivers.printer import Document, PrinterError, PrinterStatus

RUB_TABLE = tuple(
    Bill(r * 100, "RUB", i) for i, r in enumerate((10, 50, 100, 200, 500, 1000, 2000, 5000))
)


def bill(rubles: int) -> Bill:
    return next(b for b in RUB_TABLE if b.amount_minor == rubles * 100)


@dataclass
class DoubleAcceptor:
    listener: AcceptorListener | None = None
    enabled: frozenset[int] = frozenset()
    commands: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    _status: AcceptorStatus = AcceptorStatus.INITIALIZING
    _keys: itertools.count = field(default_factory=lambda: itertools.count(1))
    run_id: str = "run1"

    @property
    def status(self) -> AcceptorStatus:
        return self._status

    @property
    def info(self) -> DeviceInfo:
        return DeviceInfo("double", "double", "D1", bill_table=RUB_TABLE)

    def start(self, listener: AcceptorListener) -> None:
        self.listener = listener
        self.set_status(AcceptorStatus.DISABLED)

    def stop(self) -> None:
        self.commands.append("stop")

    def enable(self, amounts_minor: Collection[int]) -> None:
        self.enabled = frozenset(amounts_minor)
        self.commands.append("enable")

    def disable(self) -> None:
        self.enabled = frozenset()
        self.commands.append("disable")

    def stack(self) -> None:
        self.commands.append("stack")

    def return_bill(self) -> None:
        self.commands.append("return")

    def set_status(self, status: AcceptorStatus, detail: str = "") -> None:
        self._status = status
        assert self.listener is not None
        self.listener.on_status(status, detail)

    # -- what a customer does ----------------------------------------------------------
    def escrow(self, rubles: int) -> EscrowDecision:
        assert self.listener is not None
        return self.listener.on_escrow(bill(rubles))

    def report_stacked(self, rubles: int, key: str | None = None,
                       origin: StackOrigin = StackOrigin.REQUESTED) -> str:
        """Report a stacked bill; ACK (record the key) only if the listener returned."""
        assert self.listener is not None
        key = key or f"double:{self.run_id}:{next(self._keys)}"
        self.listener.on_stacked(StackedBill(bill(rubles), key, origin))
        self.acked.append(key)
        return key

    def insert(self, rubles: int) -> EscrowDecision:
        """A bill goes in: escrow, and if the engine says STACK, stacked."""
        decision = self.escrow(rubles)
        if decision is EscrowDecision.STACK:
            self.report_stacked(rubles)
        elif decision is EscrowDecision.RETURN:
            assert self.listener is not None
            self.listener.on_returned(bill(rubles))
        return decision


@dataclass
class DoublePrinter:
    state: PrinterStatus = PrinterStatus.OK
    printed: list[Document] = field(default_factory=list)
    columns: int = 42
    on_print: object = None  # callable(document) run before "printing", for M5 checks

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> PrinterStatus:
        return self.state

    def print_document(self, document: Document) -> None:
        if callable(self.on_print):
            self.on_print(document)
        if not self.state.can_print:
            raise PrinterError(f"printer cannot print: {self.state.value}")
        self.printed.append(document)

    def texts(self) -> list[str]:
        return ["\n".join(render_plain(d, self.columns)) for d in self.printed]
