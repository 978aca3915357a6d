"""One terminal in a box, for the reliability runs: everything real except the hardware.

`Station` puts together what a terminal in the field has around it:
- a CCNET bill validator (`drivers.sim.ccnet.CcnetSimulator`) and an ESC/POS printer
  (`drivers.sim.printer.PrinterSimulator`) on pseudo-terminals, both running in THIS
  process, so they outlive a killed core exactly like real devices do;
- the real core daemon (`python -m kiosk run`, or the fault-hook launcher
  tests/chaos/faultcore.py) in a subprocess, with the real CCNET and ESC/POS drivers on
  those ptys, the real SQLite ledger and, when asked, its MQTT sync agent;
- a real mosquitto (tests/sync/broker.py) on a free loopback port, stopped and started
  by pid, and a desk consumer (`sync.desk.Desk`) that verifies, commits and acks.

The daemon's output goes to a log file (never a pipe that could fill up and stall it).
Ledger facts are read through separate read-only SQLite connections (WAL: exactly what
was committed), also while the core is dead.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from drivers.ccnet.states import PollState
from drivers.profiles import load_profile
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import SimTiming
from drivers.sim.printer import PrinterSimulator, SimConfig
from kiosk.api_client import ApiClient, ApiRequestError
from kiosk.catalog import DEMO_CATALOG
from kiosk.config import DEMO_PIN_HASH
from kiosk.scripted import PaymentNotMade, run_payment
from tests import config_files

REPO = Path(__file__).resolve().parents[2]
TERMINAL = "T0001"
PROVIDER = "mts"
ACCOUNT = "9161234567"
SUPPORT_PHONE = "8 800 555-35-35"
PRINTER_PROFILE = "custom_vkp80iii"
RUB = 100
BILLS = (10, 50, 100, 500, 1000)
MIN_PAYMENT_MINOR = next(p.min_minor for p in DEMO_CATALOG.providers if p.id == PROVIDER)
READY_TIMEOUT_S = 30.0

# A CCNET profile for the runs: the protocol at pty speed, but the real profile's 20 ms
# gap between host frames (cashcode_sm: command_gap_ms = 20). That gap is what the ACK of
# a stacked report waits for after the ledger commit, so it is also the window in which
# a SIGKILL leaves a committed bill unacknowledged.
CHAOS_PROFILE = """
[profile]
name = "chaos_ccnet"
kind = "acceptor"
protocol = "ccnet"

[serial]
baudrate = 9600
bytesize = 8
parity = "none"
stopbits = 1

[identify]
patterns = ["^SM-"]

[ccnet]
address = 3

[timing]
poll_ms = 50
active_poll_ms = 20
response_timeout_ms = 300
ident_timeout_ms = 600
attempts = 3
command_gap_ms = 20
bad_frame_settle_ms = 10
reset_wait_ms = 20
reset_poll_ms = 20
init_timeout_s = 5.0
stuck_state_s = 5.0
escrow_hold_max_s = 3.0
reconnect_ms = 100
"""

SIM_TIMING = SimTiming(init_s=0.05, accept_s=0.04, stack_s=0.04, return_s=0.04, reject_s=0.05)
"""A quick unit: a bill goes from `insert` to stacked in about 0.1 s plus polling."""

TECH_PIN_HASH = DEMO_PIN_HASH  # PIN "1234"

_STACKED_LINE = re.compile(r"^stacked (\d+) ([A-Z]{3})")


class RigError(RuntimeError):
    """The rig itself could not do what a run needs (not a money finding)."""


def wait_until(cond: Callable[[], object], timeout_s: float, what: str,
               step_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(step_s)


# -- the devices -----------------------------------------------------------------------


class TapSim(CcnetSimulator):
    """The CCNET simulator, plus what the runs need to watch it from outside:

    - `stacked`: the amount (minor units) of every bill the unit put into its cassette,
      in order - the device's own record, bill by bill;
    - `reported`: set the moment a reply carrying a stacked report (0x81) has been written
      to the line, i.e. the host now holds a bill it must commit, then ACK;
    - `hits` / `clean`: when a line fault actually hit a reply, and when each clean reply
      went out (for the soak's resynchronisation times);
    - two more line faults: `spray(n)` writes n noise bytes to the host at any instant
      (between frames), `drop_bytes(n)` loses n random bytes of the next reply.
    Everything else is the unchanged simulator.
    """

    FAULT_EVENTS: ClassVar[dict[str, str]] = {"reply dropped": "drop", "reply CRC corrupted": "crc",
                    "garbage before reply": "garbage"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stacked: list[int] = []
        self.reported = threading.Event()
        self.reported_at = 0.0
        self.on_report: Callable[[], None] | None = None  # one-shot, see _send
        self.hits: list[tuple[float, str]] = []
        self.clean: list[float] = []
        self._faulted = False
        self._drop_bytes = 0
        self._hooks: list[tuple[str, Callable[[str], None]]] = []
        self._outer_echo = kwargs.pop("echo", None)
        super().__init__(*args, echo=self._tap, **kwargs)

    def _tap(self, line: str) -> None:
        m = _STACKED_LINE.match(line)
        if m:
            self.stacked.append(int(m.group(1)) * RUB)
        for text, kind in self.FAULT_EVENTS.items():
            if line.startswith(text):
                self.hits.append((time.monotonic(), kind))
                self._faulted = kind != "drop"  # a dropped reply is never sent
        fired = [h for h in self._hooks if line.startswith(h[0])]
        for hook in fired:
            self._hooks.remove(hook)
            hook[1](line)
        if self._outer_echo is not None:
            self._outer_echo(line)

    def on(self, prefix: str, action: Callable[[str], None]) -> None:
        """Run `action(line)` once, in the simulator thread, on the next event line that
        starts with `prefix` - before the reply that follows the event is sent."""
        with self._lock:
            self._hooks.append((prefix, action))

    def _send(self, data: bytes) -> None:
        if self._drop_bytes and len(data) > 2:
            self._drop_bytes -= 1
            n = self._rng.randint(1, min(3, len(data) - 1))
            for _ in range(n):
                i = self._rng.randrange(len(data))
                data = data[:i] + data[i + 1:]
            self.hits.append((time.monotonic(), "bytes"))
            self._faulted = True
        super()._send(data)
        now = time.monotonic()
        if self._faulted:
            self._faulted = False
        else:
            self.clean.append(now)
        ev = self.model.event
        if ev is not None and ev[0] == PollState.STACKED and self.model._event_sent:
            self.reported_at = now
            self.reported.set()
            hook, self.on_report = self.on_report, None
            if hook is not None:
                hook()  # in the simulator thread: the host has not even read the reply yet

    def drop_bytes(self, n: int = 1) -> None:
        with self._lock:
            self._drop_bytes += n

    def spray(self, n: int) -> bool:
        """Noise on the line between frames; False when unplugged."""
        with self._lock:
            if self._pty is None:
                return False
            noise = bytes(self._rng.randrange(0x100) for _ in range(n))
            try:
                os.write(self._pty.master_fd, noise)
            except OSError:
                return False
            self.hits.append((time.monotonic(), "spray"))
            return True

    def unacked_stacked(self) -> bool:
        """The unit holds a stacked report the host has not acknowledged."""
        with self._lock:
            ev = self.model.event
            return ev is not None and ev[0] == PollState.STACKED

    def cassette(self) -> dict[int, int]:
        """The unit's own cassette counters in minor units."""
        with self._lock:
            m = self.model
            return {m.value_of(t) * RUB: n for t, n in m.counters.stacked_by_type.items() if n}


# -- the core daemon -------------------------------------------------------------------


@dataclass
class Daemon:
    """`python -m kiosk run` (or another launcher module) as a subprocess."""

    config: Path
    workdir: Path
    module: str = "kiosk"
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    starts: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def log_path(self) -> Path:
        return self.workdir / "core.log"

    @property
    def socket(self) -> Path:
        return self.workdir / "run" / "kiosk.sock"

    @property
    def ledger(self) -> Path:
        return self.workdir / "data" / "ledger.sqlite"

    def alive(self) -> bool:
        with self.lock:
            return self.proc is not None and self.proc.poll() is None

    def start(self) -> float:
        """Start and wait for READY; returns the seconds it took."""
        with self.lock:
            t0 = time.monotonic()
            self.starts += 1
            with open(self.log_path, "ab") as log:
                offset = log.tell()
                log.write(f"\n===== start {self.starts} =====\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", self.module, "run", "--config", str(self.config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
                    cwd=REPO,
                )
            deadline = t0 + READY_TIMEOUT_S
            while time.monotonic() < deadline:
                if b"READY" in self._log_from(offset):
                    return time.monotonic() - t0
                if self.proc.poll() is not None:
                    break
                time.sleep(0.01)
            self._kill()
            raise RigError("core did not become ready:\n" + self.log_tail())

    def _log_from(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read()

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        return self._log_from(offset).decode(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill(self) -> bool:
        """SIGKILL; True if a running core was killed."""
        with self.lock:
            return self._kill()

    def _kill(self) -> bool:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            return True
        return False

    def stop(self) -> int | None:
        with self.lock:
            if self.proc is None:
                return None
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self._kill()
            return self.proc.returncode


def write_config(workdir: Path, acceptor_port: Path, printer_port: Path, extra: str = "") -> Path:
    profile = workdir / "chaos_ccnet.toml"
    profile.write_text(CHAOS_PROFILE, encoding="utf-8")
    return config_files.write_config(workdir, f"""
[acceptor]
kind = "ccnet"
port = "{acceptor_port}"
profile = "{profile}"

[printer]
kind = "escpos"
port = "{printer_port}"
profile = "{PRINTER_PROFILE}"

[timeouts]
escrow_settle = 3
{extra}
""", terminal_id=TERMINAL, support_phone=SUPPORT_PHONE, pin_hash=TECH_PIN_HASH)


# -- the ledger, read from outside -----------------------------------------------------


def ledger_rows(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return [tuple(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def ledger_stacked_count(path: Path) -> int:
    if not path.exists():
        return 0
    return int(ledger_rows(path, "SELECT count(*) FROM stacked_bills")[0][0])


# -- the station -----------------------------------------------------------------------


@dataclass
class StationOptions:
    mqtt: bool = True
    sim_timing: SimTiming = SIM_TIMING
    extra_toml: str = ""
    launcher: str = "kiosk"  # or "tests.chaos.faultcore"
    launcher_env: dict[str, str] = field(default_factory=dict)
    seed: int = 0


class Station:
    def __init__(self, workdir: Path, opts: StationOptions | None = None) -> None:
        from sync.keys import write_signing_key
        from tests.sync.broker import Broker
        from tests.sync.conftest import DeskKey

        self.opts = opts or StationOptions()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sim = TapSim(link=workdir / "ttyCCNET", timing=self.opts.sim_timing,
                          seed=self.opts.seed)
        profile = load_profile(REPO / "firmware_profiles" / f"printer_{PRINTER_PROFILE}.toml")
        self._printer_config = SimConfig.from_profile(profile)
        self.receipt_times: list[float] = []
        self.printer = self._new_printer()
        self.receipts_seen = 0  # receipts of printer instances replaced by a replug
        self.broker = Broker(workdir / "mosquitto") if self.opts.mqtt else None
        self.desk_key = DeskKey("desk1")
        self.desk: Any = None
        extra = self.opts.extra_toml
        if self.broker is not None:
            extra += self.mqtt_toml(self.broker.port)
        self.config = write_config(workdir, workdir / "ttyCCNET", workdir / "printer.pty", extra)
        key_path = workdir / "data" / "keys" / "terminal.ed25519.key"
        self.terminal_pub = write_signing_key(key_path).public_key()
        self.core = Daemon(self.config, workdir, module=self.opts.launcher,
                           env=dict(self.opts.launcher_env))

    def mqtt_toml(self, port: int) -> str:
        return f"""
[mqtt]
enabled = true
host = "127.0.0.1"
port = {port}
inflight = 200
batch = 20
resend_after_s = 2.0
reconnect_min_s = 0.2
reconnect_max_s = 1.0
health_interval_s = 30
health_min_interval_s = 1.0
{self.desk_key.toml()}"""

    def _new_printer(self) -> PrinterSimulator:
        return PrinterSimulator(self._printer_config, link=self.workdir / "printer.pty",
                                receipts_dir=self.workdir / "receipts", out=self._printer_out)

    def _printer_out(self, line: str) -> None:
        if line.startswith("receipt "):  # a receipt came out of the printer, cut
            self.receipt_times.append(time.monotonic())

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Station:
        self.sim.start()
        self.printer.start()
        if self.broker is not None:
            self.broker.start()
            self.start_desk()
        return self

    def start_desk(self) -> None:
        from sync.desk import Desk

        assert self.broker is not None
        self.desk = Desk(
            "127.0.0.1", self.broker.port, self.desk_key.key, self.desk_key.kid,
            {TERMINAL: self.terminal_pub}, self.workdir / "desk.sqlite", client_id="desk",
            reconnect_min_s=0.2,
        ).start()

    def close(self) -> None:
        """Stop everything this station started (by its own handles, never by name)."""
        errors: list[BaseException] = []
        for action in (
            self.core.kill,
            lambda: self.desk.stop() if self.desk is not None else None,
            lambda: self.broker.stop() if self.broker is not None else None,
            self.printer.stop,
            self.sim.stop,
        ):
            try:
                action()
            except BaseException as exc:  # keep stopping the rest
                errors.append(exc)
        if errors:
            raise errors[0]

    # -- the customer ------------------------------------------------------------------
    def feed(self, rubles: int) -> None:
        """The customer pushes a bill in once the slot takes it (a few tries)."""
        answer = ""
        for _ in range(40):
            answer = self.sim.command(f"insert {rubles}")
            if answer == "ok":
                return
            time.sleep(0.025)
        raise BillRefused(f"the unit did not take {rubles}: {answer}")

    def client(self, timeout: float = 5.0) -> ApiClient:
        c = ApiClient(self.core.socket, timeout=timeout)
        c.connect()
        return c

    def pay(self, bills: list[int], timeout: float = 10.0) -> dict[str, Any]:
        """One customer payment; raises NoPayment when it did not end in a new payment
        (the terminal went out of service before any cash went in)."""
        if sum(bills) * RUB < MIN_PAYMENT_MINOR:
            # below the provider's minimum "pay" is refused (the 10 ₽ fee would take a lone
            # 10 ₽ note): this customer adds a 50 ₽ note, as the screen asks
            bills = [*bills, 50]
        with self.client() as c:
            previous = ((c.snapshot or {}).get("last_payment") or {}).get("payment_id")
            try:
                result = run_payment(c, PROVIDER, ACCOUNT, bills, self.feed, timeout=timeout)
            except (TimeoutError, BillRefused, ApiRequestError):
                settle_screen(c)
                raise
            except PaymentNotMade as exc:
                settle_screen(c)
                raise NoPayment(str(exc)) from exc
            # belt and braces: never count the previous customer's payment as this one
            # (run_payment used to return it: test_findings.py)
            if not result.get("payment_id") or result["payment_id"] == previous:
                settle_screen(c)
                raise NoPayment(f"the session ended without a payment (screen "
                                f"{(c.snapshot or {}).get('screen')})")
            return result

    def replug_printer(self) -> None:
        """Pull the printer's cable and put it back: a new pty behind the same link."""
        self.receipts_seen += len(self.printer.receipts)
        self.printer.stop()
        self.printer = self._new_printer()
        self.printer.start()

    @property
    def receipts(self) -> int:
        return self.receipts_seen + len(self.printer.receipts)

    # -- what the ledger holds ---------------------------------------------------------
    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return ledger_rows(self.core.ledger, sql, *params)


class BillRefused(RuntimeError):
    pass


class NoPayment(RuntimeError):
    pass


def settle_screen(client: ApiClient, timeout: float = 10.0) -> None:
    """After an interrupted payment on a live core: finish what can be finished (pay the
    cash that is in, cancel an empty session, leave the receipt), so the next customer
    finds the idle screen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = client.request("snapshot") if client.snapshot is None else client.snapshot
        screen = snap["screen"]
        try:
            if screen == "idle" or screen == "out_of_service":
                return
            if screen == "cash":
                session = snap.get("session") or {}
                if session.get("bill_in_escrow") or session.get("finishing"):
                    pass
                elif session.get("inserted_minor", 0) >= (session.get("provider") or {}).get(
                    "min_minor", 1
                ):
                    client.intent("pay")
                elif session.get("can_cancel"):
                    client.intent("cancel")
            elif screen == "receipt":
                if (snap.get("last_payment") or {}).get("receipt") != "printing":
                    client.intent("done")
            elif screen in ("provider", "account", "confirm"):
                client.intent("cancel")
        except ApiRequestError:
            pass
        try:
            client.wait_for(lambda s, seq=snap["seq"]: s["seq"] != seq, timeout=0.5)
        except TimeoutError:
            client.snapshot = client.request("snapshot")


# -- reconciliation --------------------------------------------------------------------


@dataclass
class Reconciliation:
    device_bills: int
    ledger_bills: int
    lost: int
    duplicated: int
    problems: list[str]
    payments: int
    unclaimed: int
    desk_payments: int | None
    cassette_ledger: dict[int, int]
    cassette_device: dict[int, int]

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0


def reconcile(station: Station, desk_rows: list[dict[str, Any]] | None) -> Reconciliation:
    """Device ↔ ledger ↔ desk, bill by bill.

    1. The unit's own sequence of stacked bills equals the ledger's stacked_bills rows in
       order (the same denominations in the same order: nothing dropped, nothing twice).
    2. The ledger's cassette counters = its stacked_bills rows grouped = the unit's own
       counters (M7).
    3. Every stacked bill belongs to exactly one payment or unclaimed record; each record's
       inserted amount is the sum of its bills; payment numbers have no gaps (M5, M6).
    4. The desk holds each record exactly once (de-duplicated by payment id and
       reprocess count), with the same bills by denomination and the same amount; the sum
       over the desk equals the sum over the device (M8).
    """
    problems: list[str] = []
    device = list(station.sim.stacked)
    ledger = [a for (a,) in station.rows("SELECT amount_minor FROM stacked_bills ORDER BY id")]
    common = 0
    while common < min(len(device), len(ledger)) and device[common] == ledger[common]:
        common += 1
    if device != ledger:
        problems.append(
            f"device/ledger bill sequences differ at bill {common}: device "
            f"{device[common:common + 5]} ledger {ledger[common:common + 5]} "
            f"({len(device)} vs {len(ledger)} bills)"
        )
    lost = max(0, len(device) - len(ledger))
    duplicated = max(0, len(ledger) - len(device))

    cassette = dict(station.rows("SELECT amount_minor, count FROM cassette WHERE count > 0"))
    grouped = dict(Counter(ledger))
    unit = station.sim.cassette()
    if not (cassette == grouped == unit):
        problems.append(f"cassette: ledger counters {cassette}, ledger bills {grouped}, "
                        f"unit {unit}")

    orphans = station.rows("SELECT id, amount_minor FROM stacked_bills WHERE payment_id IS NULL")
    if orphans:
        problems.append(f"{len(orphans)} stacked bills in no payment: {orphans[:5]}")
    mismatched = station.rows(
        "SELECT p.id, p.inserted_minor, COALESCE(SUM(b.amount_minor), 0) FROM payments p "
        "LEFT JOIN stacked_bills b ON b.payment_id = p.id GROUP BY p.id "
        "HAVING p.inserted_minor != COALESCE(SUM(b.amount_minor), 0)"
    )
    if mismatched:
        problems.append(f"payments whose amount is not their bills: {mismatched[:5]}")
    numbers = [n for (n,) in station.rows("SELECT number FROM payments ORDER BY number")]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append("payment numbers have gaps or repeats")
    kinds = Counter(k for (k,) in station.rows("SELECT kind FROM payments"))

    desk_count = None
    if desk_rows is not None:
        by_payment: dict[str, Counter[int]] = {}
        for pid, amount in station.rows(
            "SELECT payment_id, amount_minor FROM stacked_bills WHERE payment_id IS NOT NULL"
        ):
            by_payment.setdefault(pid, Counter())[amount] += 1
        amounts = dict(station.rows("SELECT id, inserted_minor FROM payments"))
        seen: Counter[str] = Counter(r["payment_id"] for r in desk_rows)
        desk_count = len(seen)
        twice = [p for p, n in seen.items() if n > 1]
        if twice:
            problems.append(f"payments held twice at the desk: {twice[:5]}")
            duplicated += len(twice)
        missing = sorted(set(amounts) - set(seen))
        if missing:
            problems.append(f"{len(missing)} ledger records never reached the desk: "
                            f"{missing[:5]}")
            lost += sum(sum(by_payment.get(p, Counter()).values()) for p in missing)
        unknown = sorted(set(seen) - set(amounts))
        if unknown:
            problems.append(f"desk holds records the ledger does not: {unknown[:5]}")
        desk_total: Counter[int] = Counter()
        for r in desk_rows:
            data = r["data"]
            bills = Counter({int(b["amount_minor"]): int(b["count"])
                             for b in data.get("bills", [])})
            desk_total.update(bills)
            pid = r["payment_id"]
            if pid in amounts and (
                bills != by_payment.get(pid, Counter())
                or int(data.get("inserted_minor", -1)) != amounts[pid]
            ):
                problems.append(f"desk record {pid} differs from the ledger: {dict(bills)} "
                                f"{data.get('inserted_minor')} vs "
                                f"{dict(by_payment.get(pid, {}))} {amounts[pid]}")
        device_total = Counter(device)
        over = sum((desk_total - device_total).values())
        under = sum((device_total - desk_total).values())
        duplicated += over
        lost = max(lost, under)
    return Reconciliation(
        device_bills=len(device),
        ledger_bills=len(ledger),
        lost=lost,
        duplicated=duplicated,
        problems=problems,
        payments=kinds.get("payment", 0),
        unclaimed=kinds.get("unclaimed", 0),
        desk_payments=desk_count,
        cassette_ledger=cassette,
        cassette_device=unit,
    )


def outbox_unacked(station: Station) -> int:
    return int(station.rows("SELECT count(*) FROM outbox WHERE acked_ms IS NULL")[0][0])


def drain_to_desk(station: Station, timeout_s: float) -> float:
    """Wait until the desk holds every ledger record and the outbox is empty; seconds."""
    t0 = time.monotonic()
    ids = {p for (p,) in station.rows("SELECT id FROM payments")}

    def done() -> bool:
        at_desk = {r["payment_id"] for r in station.desk.store.payments(TERMINAL)}
        return ids <= at_desk and outbox_unacked(station) == 0

    wait_until(done, timeout_s, "every ledger record at the desk and the outbox empty", 0.1)
    return time.monotonic() - t0


def wait_idle(station: Station, timeout_s: float = 30.0) -> dict[str, Any]:
    """The core is up, reconciled and shows the idle screen."""
    with station.client(timeout=timeout_s) as c:
        return c.wait_for(lambda s: s["screen"] == "idle", timeout=timeout_s)


class RigThread(threading.Thread):
    """A fault-making thread of a run: its `_run` does the work; an exception it raises is
    kept in `error` for the run to surface, never lost in the thread."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _run(self) -> None:
        raise NotImplementedError


class Watcher(threading.Thread):
    """A subscribed local-API client, as the UI is one: records every pushed snapshot as
    (time, screen, acceptor status, printer status, out-of-service reasons, text shown).
    Reconnects when the core is back after a restart."""

    def __init__(self, station: Station) -> None:
        super().__init__(name="chaos-watcher", daemon=True)
        self.station = station
        self.timeline: list[Snap] = []
        self.halt = threading.Event()
        self._last_seq: int | None = None

    def _record(self, snap: dict[str, Any]) -> bool:
        if snap.get("seq") != self._last_seq:
            self._last_seq = snap.get("seq")
            oos = snap.get("out_of_service") or {}
            self.timeline.append(Snap(
                time.monotonic(), snap["screen"], snap["acceptor"]["status"],
                snap["printer"]["status"], tuple(oos.get("reasons", ())),
                str(oos.get("en") or oos.get("text") or ""), snap["terminal"]["support_phone"],
            ))
        return self.halt.is_set()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                with self.station.client(timeout=2.0) as c:
                    self._last_seq = None
                    while not self.halt.is_set():
                        try:
                            c.wait_for(self._record, timeout=0.5)
                        except TimeoutError:
                            continue
            except (OSError, ConnectionError, ValueError, ApiRequestError):
                self.halt.wait(0.1)

    def stop(self) -> None:
        self.halt.set()
        self.join(5)

    def first_after(self, t: float, cond: Callable[[Snap], bool]) -> Snap | None:
        for s in self.timeline:
            if s.t >= t and cond(s):
                return s
        return None


@dataclass(frozen=True)
class Snap:
    t: float
    screen: str
    acceptor: str
    printer: str
    oos: tuple[str, ...]
    text: str
    phone: str
