"""`kiosk keys` and `kiosk desk` end to end: keys and CSR on disk, then a desk tool that
signs a command for a running terminal and watches what it reports."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.sync.conftest import wait_for
from tests.sync.terminal import live_terminal, mqtt_config


def _kiosk(*args: str, cwd=None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, timeout=60,
        cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )



def _interruptible() -> None:
    """In the watcher's child process, before exec: SIGINT back to its default. A test run
    started as a background job of a non-interactive shell (no job control) passes SIGINT
    on as ignored, and Python then never raises KeyboardInterrupt: the watcher would only
    stop at its --for deadline, which is what made these tests time out in such runs."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_kiosk_keys_creates_key_tls_key_and_csr(tmp_path):
    out = _kiosk("keys", "--dir", str(tmp_path / "k"), "--terminal", "T0042")
    assert out.returncode == 0, out.stderr
    k = tmp_path / "k"
    for name in ("terminal.ed25519.key", "tls.key"):
        assert stat.S_IMODE((k / name).stat().st_mode) == 0o600
    csr = x509.load_pem_x509_csr((k / "tls.csr").read_bytes())
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=T0042"
    assert "T0042." in out.stdout
    again = _kiosk("keys", "--dir", str(k), "--terminal", "T0042")
    assert again.returncode == 1 and "exists" in again.stderr  # never overwritten


def test_kiosk_desk_keygen_cmd_and_watch(broker, tmp_path):
    desk_dir = tmp_path / "desk"
    out = _kiosk("desk", "keygen", "--dir", str(desk_dir))
    assert out.returncode == 0, out.stderr
    kid, b64 = out.stdout.strip().splitlines()[-1].replace('"', "").split(" = ")

    class Key:
        pass

    dk = Key()
    dk.kid, dk.public_b64 = kid, b64
    term = live_terminal(tmp_path / "t", "TCLI", mqtt_config(broker.port, dk))
    try:
        keys = tmp_path / "terminal-keys"
        keys.mkdir()
        (keys / "TCLI.pub").write_bytes(
            (term.config.paths.data_dir / "keys" / "terminal.ed25519.pub").read_bytes()
        )
        common = ["desk", "--port", str(broker.port), "--key",
                  str(desk_dir / "desk.ed25519.key"), "--terminal-keys", str(keys),
                  "--db", str(desk_dir / "desk.sqlite")]
        res = _kiosk(*common, "cmd", "TCLI", "set_support_phone", "--arg", "phone=8 800 123-45-67")
        assert res.returncode == 0, res.stderr
        assert res.stdout.splitlines()[0] == "executed"
        assert json.loads(res.stdout.splitlines()[-1])["ok"] is True
        assert term.engine.support_phone == "8 800 123-45-67"
        watch = subprocess.Popen(
            [sys.executable, "-m", "kiosk", *common, "watch", "--for", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd(), "PYTHONUNBUFFERED": "1"},
            preexec_fn=_interruptible,
        )
        lines: list[str] = []
        try:
            def read_until(text: str) -> None:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and not any(text in x for x in lines):
                    if select.select([watch.stdout], [], [], 0.2)[0]:
                        lines.append(watch.stdout.readline())
                assert any(text in x for x in lines), lines

            read_until("TCLI state online")  # retained: the watcher is subscribed
            pid = term.pay(500)
            read_until(f"TCLI payment {pid}")
            # health follows on its own schedule; it may come after the payment
            read_until("phone=8 800 123-45-67")
        finally:
            watch.send_signal(signal.SIGINT)
            watch.wait(30)  # a loaded machine: the desk drains and closes first
        wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 5, "acked")
    finally:
        term.stop()


class _Key:
    def __init__(self, kid: str, b64: str) -> None:
        self.kid, self.public_b64 = kid, b64


@pytest.fixture
def desk_cli(broker, tmp_path):  # type: ignore[no-untyped-def]
    """A desk key made by `kiosk desk keygen`, a terminal TCLI2 pinning it, and the
    common `kiosk desk` options."""
    desk_dir = tmp_path / "desk"
    out = _kiosk("desk", "keygen", "--dir", str(desk_dir))
    kid, b64 = out.stdout.strip().splitlines()[-1].replace('"', "").split(" = ")
    term = live_terminal(tmp_path / "t", "TCLI2", mqtt_config(broker.port, _Key(kid, b64)))
    keys = tmp_path / "terminal-keys"
    keys.mkdir()
    (keys / "TCLI2.pub").write_bytes(
        (term.config.paths.data_dir / "keys" / "terminal.ed25519.pub").read_bytes()
    )
    common = ["desk", "--port", str(broker.port), "--key", str(desk_dir / "desk.ed25519.key"),
              "--terminal-keys", str(keys), "--db", str(desk_dir / "desk.sqlite")]
    wait_for(lambda: term.agent.conn.connected, 10, "terminal connected")
    yield term, common
    term.stop()


def _session_present(port: int, client_id: str) -> bool:
    got: list[bool] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.on_connect = lambda c_, u, f, rc, p: got.append(bool(f.session_present))
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        c.loop(0.1)
    c.disconnect()
    assert got, "no CONNACK"
    return got[0]


def test_desk_cmd_tells_executed_refused_queued_and_not_delivered_apart(desk_cli, broker):
    term, common = desk_cli
    ok = _kiosk(*common, "--client-id", "desk-once", "cmd", "TCLI2", "enable")
    assert ok.returncode == 0 and ok.stdout.startswith("executed\n"), ok.stdout + ok.stderr
    # a one-shot tool leaves no session (no 7-day queue of every terminal's results)
    assert _session_present(broker.port, "desk-once") is False
    bad = _kiosk(*common, "cmd", "TCLI2", "reprocess", "--arg", "payment_id=TCLI2-00000099",
                 "--arg", "account=9160000000")
    assert bad.returncode == 1
    assert bad.stdout.startswith("refused: unknown_payment: no payment TCLI2-00000099")
    forged = _kiosk(*common, "cmd", "TCLI2", "set_support_phone", "--arg", "phone=x")
    assert forged.returncode == 1 and forged.stdout.startswith("refused: bad_args: ")
    term.agent.stop()  # away: its session keeps what the desk sends
    term.agent = None
    queued = _kiosk(*common, "cmd", "TCLI2", "request_health", "--wait", "1")
    assert queued.returncode == 2, queued.stdout + queued.stderr
    assert queued.stdout.startswith("queued at the broker, not yet executed")
    nobody = _kiosk(*common, "cmd", "TNOSESSION", "enable", "--wait", "1")
    assert nobody.returncode == 4 and "no session of TNOSESSION" in nobody.stderr


def test_reprocess_retried_by_an_operator_runs_once(desk_cli):
    term, common = desk_cli
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    watch = subprocess.Popen([sys.executable, "-m", "kiosk", *common, "watch", "--for", "30"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                             preexec_fn=_interruptible)
    try:
        pid = term.pay(500)
        wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 20, "accepted")
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(30)
    # the corrected phone as the customer reads it out: the terminal keeps its 10 digits,
    # as the operator's page does (sync/desk_service/search.py corrected_account)
    args = ["cmd", "TCLI2", "reprocess", "--arg", f"payment_id={pid}", "--arg",
            "account=8 (916) 999-99-99", "--arg", "reason=typo"]
    letters = _kiosk(*common, "cmd", "TCLI2", "reprocess", "--arg", f"payment_id={pid}",
                     "--arg", "account=nine-one-six")
    assert letters.returncode == 1 and "refused: bad_args: account" in letters.stderr
    first = _kiosk(*common, *args)
    assert first.returncode == 0 and first.stdout.startswith("executed\n"), first.stdout
    again = _kiosk(*common, *args)  # the operator is not sure it worked and retries
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.startswith("executed before, not run again")
    p = term.ledger.get_payment(pid)
    assert p["reprocess_count"] == 1 and p["account"] == "9169999999"
    assert sum(1 for h in p["history"] if h["status"] == "reprocessed") == 1


def test_status_and_config_refuse_what_would_do_harm(desk_cli, broker, tmp_path):
    term, common = desk_cli
    st = _kiosk(*common, "status", "TCLI2", "TCLI2-00000077", "processed")
    assert st.returncode == 1 and "refused: unknown_payment" in st.stderr
    assert "sent" not in st.stdout
    st = _kiosk(*common, "status", "TNOBODY", "TNOBODY-00000001", "failed")
    assert st.returncode == 1 and "refused: unknown_payment" in st.stderr
    v8 = _kiosk(*common, "config", "TCLI2", "--version", "8", "--support-phone", "8 800 800-08-08")
    assert v8.returncode == 0, v8.stderr
    wait_for(lambda: term.engine.support_phone == "8 800 800-08-08", 10, "v8 applied")
    # another desk (its own database) would replace the retained v8 with a v5
    other = [*common[:-1], str(tmp_path / "other.sqlite")]
    v5 = _kiosk(*other, "config", "TCLI2", "--version", "5", "--support-phone", "8 800 5")
    assert v5.returncode == 1 and "refused: stale_version: version 5 is not above 8" in v5.stderr
    late = live_terminal(tmp_path / "late", "TCLI2", term.config.mqtt, agent=False)
    try:  # what a terminal starting now would load: still v8
        late.start_agent()
        wait_for(lambda: late.engine.support_phone == "8 800 800-08-08", 10, "retained v8")
    finally:
        late.stop()
        _kiosk(*common, "config", "TCLI2", "--version", "9")  # (leave a newer one behind)


def test_two_watchers_do_not_fight_over_a_client_id(desk_cli, broker):
    term, common = desk_cli
    log_before = len(broker.log())
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "PYTHONUNBUFFERED": "1"}
    watchers = [
        subprocess.Popen([sys.executable, "-m", "kiosk", *common, "watch", "--for", "30"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                         preexec_fn=_interruptible)
        for _ in range(2)
    ]
    lines: list[str] = []
    # One reader thread per watcher: select() on a buffered pipe misses the lines
    # readline() already pulled into Python's buffer (a burst of retained states from
    # other tests' terminals left some unread until the 20 s ran out).
    def read(w: subprocess.Popen) -> None:
        for line in iter(w.stdout.readline, ""):
            lines.append(line)

    readers = [threading.Thread(target=read, args=(w,), daemon=True) for w in watchers]
    for r in readers:
        r.start()
    try:
        def read_until(pred) -> None:  # type: ignore[no-untyped-def]
            wait_for(pred, 20, "the watchers' lines")

        read_until(lambda: sum("TCLI2 state online" in x for x in lines) >= 2)
        pids = [term.pay(100) for _ in range(4)]
        read_until(lambda: all(any(f"payment {p}" in x for x in lines) for p in pids))
        for p in pids:
            wait_for(lambda p=p: term.ledger.get_payment(p)["status"] == "accepted", 10)
    finally:
        for w in watchers:
            w.send_signal(signal.SIGINT)
            w.wait(30)
    assert "already connected" not in broker.log()[log_before:]
