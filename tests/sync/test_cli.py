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
import time

from cryptography import x509

from tests.sync.conftest import wait_for
from tests.sync.terminal import live_terminal, mqtt_config


def _kiosk(*args: str, cwd=None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "kiosk", *args], capture_output=True, text=True, timeout=60,
        cwd=cwd, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


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
        assert json.loads(res.stdout)["ok"] is True
        assert term.engine.support_phone == "8 800 123-45-67"
        watch = subprocess.Popen(
            [sys.executable, "-m", "kiosk", *common, "watch", "--for", "30"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd(), "PYTHONUNBUFFERED": "1"},
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
        finally:
            watch.send_signal(signal.SIGINT)
            watch.wait(10)
        assert any("phone=8 800 123-45-67" in x for x in lines)
        wait_for(lambda: term.ledger.get_payment(pid)["status"] == "accepted", 5, "acked")
    finally:
        term.stop()
