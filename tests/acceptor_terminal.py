"""What the whole-terminal rigs share (tests/acceptors/rig.py for both protocols,
tests/ccnet/terminal.py for CCNET scenarios with restarts): hooks on simulator events, the
daemon's ticker, and `TerminalActions`, the customer's side and the ledger's facts.

Waits are condition waits with timeouts. Ledger facts are read through a separate
read-only SQLite connection (WAL: it sees exactly what was committed), never through the
ledger's own connection, which the driver thread may be using at the same moment.
"""

from __future__ import annotations

import abc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from drivers.acceptor import AcceptorStatus
from kiosk.config import Config
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger
from tests.acceptor_fixtures import WAIT_S, wait_until

__all__ = ["MTS_ACCOUNT", "RUB", "TICK_S", "WAIT_S", "SimHooks", "TerminalActions", "Ticker",
           "started_rigs", "wait_until"]

TICK_S = 0.1
"""The daemon ticks the engine every 100 ms (docs/architecture.md, "Threads in the core")."""
MTS_ACCOUNT = "9161234567"
RUB = 100


class SimHooks:
    """Python callbacks on simulator event lines (the simulators' `echo`).

    A hook runs in the simulator thread, with the simulator's lock held, before the reply
    that follows the event is sent: `on("stacking 500", f)` runs `f` after the unit has
    accepted STACK and before the driver sees the ACK. Each hook fires once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hooks: list[tuple[str, Callable[[str], None]]] = []
        self.errors: list[BaseException] = []

    def on(self, text: str, action: Callable[[str], None]) -> None:
        with self._lock:
            self._hooks.append((text, action))

    def __call__(self, line: str) -> None:
        with self._lock:
            fired = [h for h in self._hooks if h[0] in line]
            for hook in fired:
                self._hooks.remove(hook)
        for _text, action in fired:
            try:
                action(line)
            except BaseException as exc:  # surfaced by Rig.close, not lost in a thread
                self.errors.append(exc)


class Ticker(threading.Thread):
    """The daemon's periodic `engine.tick()` (timeouts, start-up reconciliation)."""

    def __init__(self, engine: PaymentEngine) -> None:
        super().__init__(name="test-ticker", daemon=True)
        self.engine = engine
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        while not self.halt.wait(TICK_S):
            try:
                self.engine.tick()
            except BaseException as exc:
                self.error = exc
                return


class TerminalActions(abc.ABC):
    """The customer's side of a running terminal and the ledger's facts.

    A rig provides `config`, `engine`, `ledger` and `sim` (the protocol's simulator), how
    to wait until the unit takes bills, and the unit's own cassette counters.
    """

    config: Config
    sim: Any
    engine: PaymentEngine
    ledger: Ledger

    @abc.abstractmethod
    def wait_taking_bills(self, rubles: int | None = None) -> None:
        """The unit idles with bills enabled (and this one, if given) and nothing pending."""

    @abc.abstractmethod
    def unit_cassette(self) -> dict[int, int]:
        """The simulated unit's own counters, in the ledger's terms (minor units)."""

    # -- the customer --------------------------------------------------------------------

    def intent(self, name: str, **args: Any) -> Any:
        return self.engine.intent(name, args)

    def screen(self) -> str:
        return self.engine.snapshot()["screen"]

    def inserted(self) -> int:
        session = self.engine.snapshot()["session"]
        return session["inserted_minor"] if session else 0

    def notice(self) -> str | None:
        notice = self.engine.snapshot()["notice"]
        return notice["code"] if notice else None

    def to_cash(self, provider: str = "mts", account: str = MTS_ACCOUNT) -> None:
        self.intent("select_provider", provider_id=provider)
        self.intent("submit_account", account=account)
        self.intent("confirm_account")
        assert self.screen() == "cash"
        self.wait_taking_bills()

    def insert(self, rubles: int) -> int:
        """The customer inserts a bill; returns the simulator's event mark before it."""
        mark = self.sim.mark()
        answer = self.sim.command(f"insert {rubles}")
        assert answer == "ok", answer
        return mark

    def pay(self) -> str:
        """Customer presses pay; returns the payment id once the receipt is printed."""
        self.intent("pay")
        wait_until(lambda: self.screen() == "receipt", what="receipt screen")
        self.drain_printer()
        last = self.engine.snapshot()["last_payment"]
        assert last is not None
        return last["payment_id"]

    def drain_printer(self) -> None:
        self.engine.printer_worker.drain(WAIT_S)

    def wait_status(self, status: AcceptorStatus, what: str = "") -> None:
        wait_until(lambda: self.engine.acceptor_status is status,
                   what=what or f"acceptor status {status.value}")

    # -- what the ledger holds -----------------------------------------------------------

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        uri = f"file:{self.config.paths.ledger}?mode=ro"
        with sqlite3.connect(uri, uri=True) as db:
            return [tuple(r) for r in db.execute(sql, params)]

    def payments(self) -> list[tuple[Any, ...]]:
        """(id, kind, inserted_minor, status, note) per payment or unclaimed record."""
        return self.rows(
            "SELECT id, kind, inserted_minor, status, note FROM payments ORDER BY number")

    def stacked_bills(self) -> list[tuple[Any, ...]]:
        """(amount_minor, session_id, payment_id, recovered) per stacked bill, in order."""
        return self.rows("SELECT amount_minor, session_id, payment_id, recovered "
                         "FROM stacked_bills ORDER BY id")

    def cassette(self) -> dict[int, int]:
        return dict(self.rows("SELECT amount_minor, count FROM cassette WHERE count > 0"))

    def event_kinds(self) -> list[str]:
        return [e["kind"] for e in reversed(self.ledger.recent_events(200))]

    def assert_money_consistent(self) -> None:
        """M2/M6/M7: every bill in the cassette is in the ledger once, in exactly one
        payment or unclaimed record (or its still-collecting session), and the ledger's
        cassette counters equal both the stacked-bill rows and the unit's own counters."""
        bills = self.stacked_bills()
        derived: dict[int, int] = {}
        for amount, *_ in bills:
            derived[amount] = derived.get(amount, 0) + 1
        unit = self.unit_cassette()
        assert self.cassette() == derived == unit, (self.cassette(), derived, unit)
        for amount, session_id, payment_id, _recovered in bills:
            assert payment_id is not None or session_id is not None, f"orphan bill {amount}"
        totals = self.rows(
            "SELECT p.id, p.inserted_minor, SUM(b.amount_minor) FROM payments p "
            "JOIN stacked_bills b ON b.payment_id = p.id GROUP BY p.id")
        for pid, inserted, summed in totals:
            assert inserted == summed, f"payment {pid}: {inserted} != bills {summed}"


class _Rig(Protocol):
    def wait_in_service(self) -> None: ...

    def close(self) -> None: ...


RigT = TypeVar("RigT", bound=_Rig)


def started_rigs(build: Callable[..., RigT]) -> Iterator[Callable[..., RigT]]:
    """For a `make_rig` fixture: `make(**kwargs)` builds a rig with `build(**kwargs)` and
    waits until it is in service; every rig made is closed at teardown."""
    rigs: list[RigT] = []

    def make(**kwargs: Any) -> RigT:
        rig = build(**kwargs)
        rigs.append(rig)
        rig.wait_in_service()
        return rig

    yield make
    for rig in rigs:
        rig.close()
