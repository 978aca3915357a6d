"""`kiosk demo` (`make demo`): a whole terminal on one machine, no hardware, no broker.

It starts device simulators on pseudo-terminals — a CashCode CCNET bill validator and an
ESC/POS receipt printer, both speaking the real bytes to the real drivers — then the core
daemon with a fresh SQLite ledger, and a scripted customer pays a mobile phone through
the local API (`--acceptor virtual` uses the in-process virtual acceptor instead). At the
end it shows the receipt as the printer decoded it, the ledger's payments and the outbox, where the
payment waits for the central desk (no MQTT broker is needed: payments queue).

`--desk` delivers it to a desk instead (agent/demo_desk.py: a local mosquitto, a desk
worker on SQLite) and keeps the operator's page open on it until Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.demo_desk import OPERATOR, OPERATOR_PASSWORD, DemoDesk, DemoDeskError, parse_http
from drivers.profiles import load_profile
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.id003 import Id003Simulator
from drivers.sim.printer import PrinterSimulator, SimConfig
from kiosk.api_client import ApiClient
from kiosk.scripted import inbox_feeder, run_payment

PRINTER_PROFILE = "custom_vkp80iii"
ACCEPTOR_PROFILES = {"ccnet": "cashcode_sm", "id003": "jcm_uba"}
READY_TIMEOUT_S = 30.0
UI_SETTLE_S = 3.0
DEMO_PROVIDER, DEMO_ACCOUNT, DEMO_BILLS = "mts", "9161234567", [500, 100, 50]


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _acceptor_section(work: Path, kind: str) -> str:
    if kind in ACCEPTOR_PROFILES:
        port, profile = work / "acceptor.pty", ACCEPTOR_PROFILES[kind]
        return f'kind = "{kind}"\nport = "{port}"\nprofile = "{profile}"'
    return 'kind = "virtual"'


def _write_config(work: Path, printer_port: str, acceptor: str, mqtt: str = "") -> Path:
    path = work / "kiosk.toml"
    path.write_text(
        f"""# written by `kiosk demo`
[terminal]
id = "DEMO-01"
address = "Москва, Тверская ул., 1"
support_phone = "8 800 555-35-35"

[paths]
data_dir = "{work / "data"}"
runtime_dir = "{work / "run"}"
log_dir = "{work / "log"}"

[acceptor]
{_acceptor_section(work, acceptor)}

[printer]
kind = "escpos"
port = "{printer_port}"
profile = "{PRINTER_PROFILE}"
{mqtt}""",
        encoding="utf-8",
    )
    return path


def _start_core(config: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kiosk", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline, buf = time.monotonic() + READY_TIMEOUT_S, b""
    while time.monotonic() < deadline and b"READY" not in buf:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf += chunk
    if b"READY" not in buf:
        proc.kill()
        raise RuntimeError("the core did not start:\n" + buf.decode(errors="replace"))
    return proc


def _start_ui(config: Path, work: Path) -> subprocess.Popen | None:
    """The touchscreen, when there is a display to show it on (and Kivy is installed)."""
    if not os.environ.get("DISPLAY") or importlib.util.find_spec("kivy") is None:
        return None
    env = {
        **os.environ,
        "KIVY_NO_ARGS": "1",
        "KIVY_NO_CONSOLELOG": "1",
        "KIVY_HOME": str(work / "kivy"),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "kiosk", "ui", "-c", str(config)],
        stdout=open(work / "ui.log", "w"),
        stderr=subprocess.STDOUT,
        env=env,
    )


def _show_desk(desk: DemoDesk, payment_id: str, serve_for: float | None) -> None:
    """Keep the terminal, the desk and its page running until Ctrl-C (or SIGTERM, or
    `serve_for` seconds): the operator's actions on the page reach the terminal."""
    assert desk.web is not None
    _say("the operator's page (the call center's view of this payment)")
    print(f"open {desk.web.url}/ and log in as '{OPERATOR}', password '{OPERATOR_PASSWORD}'")
    print(f"search '{payment_id}' or '+7 916 123-45-67': the demo payment; Ctrl-C stops",
          flush=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait(serve_for)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(args: argparse.Namespace) -> int:
    work = Path(args.workdir).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    profile = load_profile(
        Path(__file__).resolve().parent.parent
        / "firmware_profiles"
        / f"printer_{PRINTER_PROFILE}.toml"
    )
    _say(f"printer simulator ({profile.name}) on a pseudo-terminal")
    printer = PrinterSimulator(
        SimConfig.from_profile(profile), link=work / "printer.pty", receipts_dir=work / "receipts"
    )
    printer.start()
    bills_sim: CcnetSimulator | Id003Simulator | None = None
    feed: Callable[[int], None]
    if args.acceptor in ACCEPTOR_PROFILES:
        simulator = CcnetSimulator if args.acceptor == "ccnet" else Id003Simulator
        name = "CashCode CCNET" if args.acceptor == "ccnet" else "JCM ID-003"
        _say(f"{name} bill validator simulator on a pseudo-terminal")
        sim = bills_sim = simulator(link=work / "acceptor.pty").start()

        def insert(rubles: int) -> None:
            sim.command(f"insert {rubles}")

        feed = insert
    else:
        feed = inbox_feeder(work / "data" / "virtual-acceptor.inbox")
    core = ui = None
    desk: DemoDesk | None = None
    ok = acked = False
    try:
        mqtt = ""
        if args.desk:
            desk = DemoDesk(work, parse_http(args.http))
            _say("the central desk: a local mosquitto, a desk worker on SQLite, its page")
            desk.start_broker()
            mqtt = desk.mqtt_section(work / "data" / "keys" / "terminal.ed25519.key")
        config = _write_config(work, str(work / "printer.pty"), args.acceptor, mqtt)
        _say(f"core daemon: kiosk run --config {config}")
        core = _start_core(config)
        if desk is not None:
            print(f"desk page at {desk.start_desk()}/ (database {desk.db})")
        ui = _start_ui(config, work) if not args.no_ui else None
        if ui is not None:
            _say("touchscreen (kiosk ui) on this display; the scripted customer pays")
            time.sleep(UI_SETTLE_S)  # let it draw the idle screen before the customer comes
        socket_path = work / "run" / "kiosk.sock"
        with ApiClient(socket_path) as client:
            hello = client.connect()
            snap = hello["snapshot"]
            print(
                f"terminal {hello['terminal_id']}, screen '{snap['screen']}', "
                f"support phone {snap['terminal']['support_phone']}"
            )
            _say(f"a customer pays {DEMO_ACCOUNT} ({DEMO_PROVIDER}) with bills {DEMO_BILLS}")
            idle = client.wait_for(lambda s: s["screen"] == "idle", timeout=30)
            print(
                f"acceptor: {idle['acceptor']['status']}, printer: "
                f"{idle['printer']['status']}"
            )
            payment = run_payment(client, DEMO_PROVIDER, DEMO_ACCOUNT, DEMO_BILLS, feed)
            print(json.dumps(payment, ensure_ascii=False, indent=2))
            status = client.request(
                "payment_status",
                payment_id=payment["payment_id"],
                check_code=payment["check_code"],  # printed on the receipt
            )
            print(
                f"'check my payment' at the terminal: {status['payment_id']} is {status['status']}"
            )
        printer.wait_for_receipts(1, timeout=10)
        _say("the receipt, as the printer simulator decoded it (CP866 ESC/POS)")
        receipts = sorted((work / "receipts").glob("*.txt"))
        print(receipts[-1].read_text(encoding="utf-8") if receipts else "(no receipt!)")
        if desk is not None:
            acked = desk.wait_acked(work / "data" / "ledger.sqlite", payment["payment_id"])
            _say("ledger and outbox (the desk stored the payment and acknowledged it)")
        else:
            _say("ledger and outbox (no MQTT broker configured: the payment waits for the desk)")
        db = sqlite3.connect(work / "data" / "ledger.sqlite")
        for pid, status_, inserted, fee, credited in db.execute(
            "SELECT id, status, inserted_minor, commission_minor, credited_minor FROM payments"
        ):
            print(
                f"payment {pid}: {status_}, inserted {inserted / 100:.2f}, "
                f"fee {fee / 100:.2f}, credited {credited / 100:.2f}"
            )
        for kind, ref, attempts in db.execute(
            "SELECT kind, ref, attempts FROM outbox WHERE acked_ms IS NULL ORDER BY id"
        ):
            print(f"outbox: {kind} {ref} waiting for the desk's ack ({attempts} attempts)")
        for kind, ref in db.execute(
            "SELECT kind, ref FROM outbox WHERE acked_ms IS NOT NULL AND kind = 'payment'"
        ):
            print(f"outbox: {kind} {ref} acknowledged by the desk")
        cassette = list(db.execute("SELECT amount_minor, count FROM cassette WHERE count > 0"))
        print("cassette: " + ", ".join(f"{a // 100} x {n}" for a, n in cassette))
        db.close()
        ok = bool(receipts) and payment.get("receipt") == "printed"
        if desk is not None:
            ok = ok and acked
            if not acked:
                print("the desk did not acknowledge the payment in time: see "
                      f"{desk.folder / 'mosquitto.log'}")
        if ui is not None:
            print(
                f"touchscreen: {'running' if ui.poll() is None else 'exited'} "
                f"(log {work / 'ui.log'})"
            )
            time.sleep(UI_SETTLE_S)  # the receipt screen stays visible for a moment
        if desk is not None and ok:
            _show_desk(desk, payment["payment_id"], args.desk_for)
    except DemoDeskError as exc:
        print(f"kiosk demo --desk: {exc}", file=sys.stderr)
        return 2
    finally:
        if desk is not None:
            desk.stop()
        if core is not None:
            core.send_signal(signal.SIGTERM)
            try:
                core.wait(timeout=15)
            except subprocess.TimeoutExpired:
                core.kill()
        printer.stop()
        if bills_sim is not None:
            bills_sim.stop()
        if ui is not None:
            ui.terminate()
            ui.wait(timeout=15)
    _say("demo finished" if ok else "demo FAILED")
    print(f"files: {work} (config, ledger, receipts, frame logs)")
    return 0 if ok else 1
