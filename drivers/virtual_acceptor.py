"""An in-process bill acceptor for demos and crash tests, with a memory of its own.

A real acceptor outlives the core: if the core is killed between committing a stacked bill
and acknowledging it, the device still holds the un-acknowledged event and reports it
again. This device keeps that memory in an append-only journal file (fsynced), so a core
killed with SIGKILL and restarted meets the same device state. Bills arrive through an
inbox file (one command a line: `insert 500`, amounts in major units), appended by a test
or the demo. The journal is also the ground truth of what is in the cassette.

It follows the same listener contract as the serial drivers: escrow → decision →
stacked → (listener commits) → ACK; a listener exception means no ACK.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from drivers.acceptor import (
    AcceptorListener,
    AcceptorStatus,
    Bill,
    DeviceInfo,
    EscrowDecision,
    StackedBill,
    StackOrigin,
)

log = logging.getLogger("kiosk.virtual_acceptor")

MINOR_PER_MAJOR = 100
RUB_TABLE = tuple(
    Bill(rub * MINOR_PER_MAJOR, "RUB", i)
    for i, rub in enumerate((10, 50, 100, 200, 500, 1000, 2000, 5000))
)


@dataclass
class JournalState:
    inbox_offset: int = 0
    stacked: int = 0  # bills in the cassette (ground truth)
    stacked_amount_minor: int = 0
    unacked: dict | None = None  # {"seq", "amount_minor"}: stacked, host has not ACKed
    in_validator: dict | None = None  # a bill taken from the inbox, outcome not yet known
    seq: int = 0


def read_journal(path: Path) -> JournalState:
    """Replay the device memory. A torn last line (power cut while writing) is ignored."""
    state = JournalState()
    if not path.exists():
        return state
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        op = rec.get("op")
        if op == "take":
            state.inbox_offset = rec["offset"]
            state.in_validator = {"amount_minor": rec["amount_minor"]}
        elif op == "skip":
            state.inbox_offset = rec["offset"]
        elif op == "stacked":
            state.seq = rec["seq"]
            state.stacked += 1
            state.stacked_amount_minor += rec["amount_minor"]
            state.unacked = {"seq": rec["seq"], "amount_minor": rec["amount_minor"]}
            state.in_validator = None
        elif op == "acked":
            if state.unacked and state.unacked["seq"] == rec["seq"]:
                state.unacked = None
        elif op in ("returned", "rejected"):
            state.in_validator = None
    return state


class VirtualAcceptor:
    def __init__(
        self,
        journal: Path,
        inbox: Path,
        bill_table: tuple[Bill, ...] = RUB_TABLE,
        poll_s: float = 0.01,
        ack_delay_s: float = 0.0,
    ) -> None:
        self._journal_path = journal
        self._inbox = inbox
        self._table = bill_table
        self._poll_s = poll_s
        self._ack_delay_s = ack_delay_s
        self._enabled: frozenset[int] = frozenset()
        self._held: Bill | None = None
        self._held_decision: EscrowDecision | None = None
        self._status = AcceptorStatus.INITIALIZING
        self._listener: AcceptorListener | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_id = uuid.uuid4().hex[:8]
        self._cmd_lock = threading.Lock()
        self._state = JournalState()

    # -- BillAcceptor ------------------------------------------------------------------
    @property
    def status(self) -> AcceptorStatus:
        return self._status

    @property
    def info(self) -> DeviceInfo:
        return DeviceInfo(
            protocol="virtual", model="virtual", serial_number="V0001", bill_table=self._table
        )

    def start(self, listener: AcceptorListener) -> None:
        self._listener = listener
        self._journal_path.parent.mkdir(parents=True, exist_ok=True)
        self._inbox.parent.mkdir(parents=True, exist_ok=True)
        self._inbox.touch(exist_ok=True)
        self._state = read_journal(self._journal_path)
        self._journal = open(self._journal_path, "a", encoding="utf-8")  # noqa: SIM115
        self._thread = threading.Thread(target=self._run, name="virtual-acceptor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._journal.close()

    def enable(self, amounts_minor: Collection[int]) -> None:
        with self._cmd_lock:
            self._enabled = frozenset(amounts_minor)

    def disable(self) -> None:
        with self._cmd_lock:
            self._enabled = frozenset()

    def stack(self) -> None:
        with self._cmd_lock:
            self._held_decision = EscrowDecision.STACK

    def return_bill(self) -> None:
        with self._cmd_lock:
            self._held_decision = EscrowDecision.RETURN

    # -- the device --------------------------------------------------------------------
    def _write(self, record: dict) -> None:
        self._journal.write(json.dumps(record) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

    def _set_status(self, status: AcceptorStatus, detail: str = "") -> None:
        if status is not self._status:
            self._status = status
            assert self._listener is not None
            self._listener.on_status(status, detail)

    def _run(self) -> None:
        assert self._listener is not None
        # Power-up: a bill that was in the validator when the host died is returned
        # (CCNET 0x11 behaviour); an un-acknowledged stacked bill is reported again.
        if self._state.in_validator is not None:
            self._write({"op": "returned"})
            self._state.in_validator = None
        while self._state.unacked is not None and not self._stop.is_set():
            try:
                unacked = self._state.unacked
                self._report_stacked(unacked["seq"], unacked["amount_minor"], recovered=True)
            except Exception:
                log.exception("stacked bill not taken by the host; will report again")
                self._stop.wait(self._poll_s * 10)
        self._set_status(AcceptorStatus.DISABLED)
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the line thread must survive a listener bug
                log.exception("virtual acceptor step failed")
            self._stop.wait(self._poll_s)

    def _step(self) -> None:
        st = self._state
        if st.unacked is not None:
            self._report_stacked(st.unacked["seq"], st.unacked["amount_minor"], recovered=False)
            return
        with self._cmd_lock:
            enabled = self._enabled
        self._set_status(AcceptorStatus.IDLE if enabled else AcceptorStatus.DISABLED)
        if self._held is not None:
            self._decide(self._held)
            return
        if not enabled:
            return
        bill = self._next_bill()
        if bill is None:
            return
        if bill.amount_minor not in enabled:
            self._write({"op": "rejected"})
            assert self._listener is not None
            self._listener.on_rejected("inhibited denomination")
            return
        self._held = bill
        self._decide(bill)

    def _next_bill(self) -> Bill | None:
        try:
            with open(self._inbox, "rb") as f:
                f.seek(self._state.inbox_offset)
                line = f.readline()
        except OSError:
            return None
        if not line.endswith(b"\n"):
            return None  # nothing new, or a line still being written
        offset = self._state.inbox_offset + len(line)
        parts = line.decode("utf-8", "replace").split()
        bill = None
        if len(parts) == 2 and parts[0] == "insert" and parts[1].isdigit():
            amount = int(parts[1]) * MINOR_PER_MAJOR
            bill = next((b for b in self._table if b.amount_minor == amount), None)
        if bill is None:
            self._write({"op": "skip", "offset": offset})
            self._state.inbox_offset = offset
            return None
        self._write({"op": "take", "offset": offset, "amount_minor": bill.amount_minor})
        self._state.inbox_offset = offset
        self._state.in_validator = {"amount_minor": bill.amount_minor}
        return bill

    def _decide(self, bill: Bill) -> None:
        assert self._listener is not None
        with self._cmd_lock:
            held_decision, self._held_decision = self._held_decision, None
        decision = held_decision or self._listener.on_escrow(bill)
        if decision is EscrowDecision.HOLD:
            return  # stays in escrow; asked again next step
        self._held = None
        if decision is EscrowDecision.RETURN:
            self._write({"op": "returned"})
            self._state.in_validator = None
            self._listener.on_returned(bill)
            return
        seq = self._state.seq + 1
        self._write({"op": "stacked", "seq": seq, "amount_minor": bill.amount_minor})
        st = self._state
        st.seq, st.stacked = seq, st.stacked + 1
        st.stacked_amount_minor += bill.amount_minor
        st.unacked = {"seq": seq, "amount_minor": bill.amount_minor}
        st.in_validator = None
        self._report_stacked(seq, bill.amount_minor, recovered=False)

    def _report_stacked(self, seq: int, amount_minor: int, recovered: bool) -> None:
        assert self._listener is not None
        bill = next(b for b in self._table if b.amount_minor == amount_minor)
        # The key carries this run's id, like a serial driver's: after a restart the
        # same physical bill arrives under a new key and the ledger must recognise it.
        key = f"virtual:{self._run_id}:{seq}"
        origin = StackOrigin.UNREQUESTED if recovered else StackOrigin.REQUESTED  # a repeat
        self._listener.on_stacked(StackedBill(bill, key, origin))  # raises: no ACK
        if self._ack_delay_s:
            time.sleep(self._ack_delay_s)
        self._write({"op": "acked", "seq": seq})
        self._state.unacked = None
