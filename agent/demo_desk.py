"""`kiosk demo --desk`: the demo's payment delivered to a central desk, and the
operator's page on it.

It starts a local mosquitto on a free loopback port, gives the demo terminal and a desk
their Ed25519 keys, runs one desk worker on a SQLite file (the real exactly-once path:
verify, store, commit, then acknowledge; the terminal's outbox empties on that ack) and
serves the operator's page with a demo operator account. The terminal keeps running
while the page is open, so an operator's action (re-process, a status) reaches it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.loopback import free_port, port_open
from sync.keys import key_id, public_b64, write_signing_key

TERMINAL_ID = "DEMO-01"
OPERATOR, OPERATOR_PASSWORD = "demo", "demo-desk"  # the page's demo account (role operator)
BROKER_READY_S = 10.0
ACK_WAIT_S = 30.0
POLL_S = 0.05
DESK_DIR = "desk"


class DemoDeskError(RuntimeError):
    """The desk part of the demo cannot run (no mosquitto, a busy port); says why."""


def mosquitto_path() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def parse_http(text: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT) for the page; DemoDeskError if it is not one."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DemoDeskError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host or "127.0.0.1", int(port)


@dataclass
class DemoDesk:
    work: Path
    http: tuple[str, int]
    broker_port: int = 0
    broker: subprocess.Popen | None = None
    desk: Any = None
    web: Any = None
    desk_key: Any = None  # the desk's Ed25519 private key (commands, statuses)
    kid: str = ""
    terminal_pub: Any = None  # the public key the desk pins for DEMO-01

    @property
    def folder(self) -> Path:
        return self.work / DESK_DIR

    @property
    def db(self) -> Path:
        return self.folder / "desk.sqlite"

    def start_broker(self) -> None:
        exe = mosquitto_path()
        if exe is None:
            raise DemoDeskError("mosquitto is not installed: run scripts/system-deps.sh "
                                "(Debian package 'mosquitto')")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.broker_port = free_port()
        # As root, mosquitto would drop to its own user, who cannot read our files.
        user = "user root\n" if os.geteuid() == 0 else ""
        conf = self.folder / "mosquitto.conf"
        conf.write_text(f"{user}listener {self.broker_port} 127.0.0.1\nallow_anonymous true\n"
                        "persistence false\n", encoding="utf-8")
        log = open(self.folder / "mosquitto.log", "wb")  # noqa: SIM115 - the broker keeps it
        self.broker = subprocess.Popen([exe, "-c", str(conf), "-v"], stdout=log,
                                       stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + BROKER_READY_S
        while not port_open(self.broker_port):
            if self.broker.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DemoDeskError("mosquitto did not start: see "
                                    f"{self.folder / 'mosquitto.log'}")
            time.sleep(POLL_S)

    def mqtt_section(self, terminal_key_path: Path) -> str:
        """The terminal's [mqtt] section: this broker, and the desk key it obeys. Makes
        the desk's key and the terminal's signing key (the desk pins its public half)."""
        desk_key = write_signing_key(self.folder / "desk.ed25519.key")
        self.desk_key = desk_key
        self.kid = key_id("desk", desk_key.public_key())
        (self.folder / "desk.ed25519.kid").write_text(self.kid + "\n", encoding="utf-8")
        term_key = write_signing_key(terminal_key_path)
        self.terminal_pub = term_key.public_key()
        keys = self.folder / "terminals"
        keys.mkdir(exist_ok=True)
        shutil.copy(terminal_key_path.with_suffix(".pub"), keys / f"{TERMINAL_ID}.pub")
        return (f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {self.broker_port}\n'
                "reconnect_min_s = 0.2\nreconnect_max_s = 2.0\nresend_after_s = 5.0\n"
                f'signing_key = "{terminal_key_path}"\n'
                f'[mqtt.desk_keys]\n"{self.kid}" = "{public_b64(desk_key.public_key())}"\n')

    def start_desk(self) -> str:
        """The desk worker and its page; returns the page's address."""
        from sync.desk import SHARE_GROUP, Desk
        from sync.desk_service.db import DeskDB
        from sync.desk_service.operators import Operators, Role
        from sync.desk_service.web import DeskWeb

        store = DeskDB(self.db)
        Operators(store.engine).add(OPERATOR, OPERATOR_PASSWORD, Role.OPERATOR)
        self.desk = Desk("127.0.0.1", self.broker_port, self.desk_key, self.kid,
                         {TERMINAL_ID: self.terminal_pub}, store, client_id="desk-demo",
                         persistent=False, share_group=SHARE_GROUP).start()
        try:
            self.web = DeskWeb(store, self.desk).start(*self.http)
        except OSError as exc:
            raise DemoDeskError(f"the desk page cannot listen on "
                                f"{self.http[0]}:{self.http[1]}: {exc}") from exc
        return str(self.web.url)

    def wait_acked(self, ledger: Path, payment_id: str) -> bool:
        """Until the desk has acknowledged the payment (its outbox row acked)."""
        deadline = time.monotonic() + ACK_WAIT_S
        while time.monotonic() < deadline:
            db = sqlite3.connect(ledger)
            try:
                row = db.execute("SELECT acked_ms FROM outbox WHERE kind = 'payment' AND "
                                 "ref = ? ORDER BY id DESC", (payment_id,)).fetchone()
            finally:
                db.close()
            if row is not None and row[0] is not None:
                return True
            time.sleep(POLL_S * 4)
        return False

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
            self.web = None
        if self.desk is not None:
            self.desk.stop()
            self.desk = None
        if self.broker is not None:
            if self.broker.poll() is None:
                self.broker.terminate()
                try:
                    self.broker.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.broker.kill()
                    self.broker.wait(timeout=10)
            self.broker = None
