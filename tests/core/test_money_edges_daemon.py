"""Money at the edges (issue 12) with the real core daemon and CLI processes: a ledger
lost under the running core and at start, the technician's `kiosk ledger init --new`,
one core per data folder, configuration errors before any side effect, the socket
folder's mode, persisted PIN lockout, technician tokens bound to their connection, and
odd local-API inputs.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.api_client import ApiClient, ApiRequestError
from kiosk.ledger.identity import PAYMENT_BLOCK
from kiosk.scripted import inbox_feeder, run_payment
from tests.core.daemon import Core, write_config

ROOT = Path(__file__).resolve().parents[2]


def kiosk(config: Path, *args: str, env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "kiosk", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


@pytest.fixture
def core(tmp_path):
    c = Core(write_config(tmp_path), tmp_path)
    c.start()
    yield c
    if c.proc is not None and c.proc.poll() is None:
        assert c.stop() == 0, "".join(c.log)


def _pay(core: Core, bills: list[int]) -> dict:
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        client.wait_for(lambda s: s["screen"] == "idle", timeout=20)
        return run_payment(client, "mts", "9161234567", bills, inbox_feeder(core.inbox))


# -- DEFECTS 6 and 7 -----------------------------------------------------------------------
def test_ledger_lost_under_the_core_then_technician_starts_a_new_one(core):
    first = _pay(core, [1000, 1000])
    assert first["payment_id"] == "T0001-00000001"
    for suffix in ("", "-wal", "-shm"):
        Path(str(core.ledger) + suffix).unlink(missing_ok=True)
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        client.wait_for(lambda s: s["screen"] == "out_of_service", timeout=20)
        status = client.request("status")
        assert "deleted" in status["out_of_service"]["ledger"]
    assert core.stop() == 0

    core.start()  # the terminal ran before: no silent new ledger
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        snap = client.wait_for(lambda s: s["screen"] == "out_of_service", timeout=20)
        assert snap["out_of_service"]["reasons"] == ["ledger"]
        assert "missing" in client.request("status")["out_of_service"]["ledger"]
        assert not core.ledger.exists()
    shown = kiosk(core.config, "status")  # what the technician sees first
    assert shown.returncode == 0 and "missing" in shown.stdout, shown.stderr
    refused = kiosk(core.config, "ledger", "init", "--new", env={"KIOSK_PIN": "1234"})
    assert refused.returncode != 0  # no confirmation typed (stdin is empty)
    done = kiosk(
        core.config,
        "ledger",
        "init",
        "--new",
        "--yes",
        "--reason",
        "ledger lost",
        env={"KIOSK_PIN": "1234"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["out_of_service"] == []
    second = _pay(core, [500])
    number = int(second["payment_id"].split("-")[1])
    assert number > PAYMENT_BLOCK  # never the lost ledger's 1 again
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        token = client.request("tech.login", pin="1234")["token"]
        events = client.request("tech.events", token=token, limit=50)
    init = [e for e in events if e["kind"] == "ledger_initialised"]
    assert init and init[0]["data"]["reason"] == "ledger lost"


def test_replaced_ledger_at_start_keeps_the_terminal_out_of_service(core, tmp_path):
    _pay(core, [100])
    assert core.stop() == 0
    (tmp_path / "other").mkdir()
    stranger = Core(write_config(tmp_path / "other"), tmp_path / "other")
    stranger.start()  # another ledger, e.g. an old backup or another terminal's
    assert stranger.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        Path(str(core.ledger) + suffix).unlink(missing_ok=True)
    os.replace(stranger.ledger, core.ledger)
    core.start()
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        client.wait_for(lambda s: s["screen"] == "out_of_service", timeout=20)
        assert "replaced" in client.request("status")["out_of_service"]["ledger"]


# -- DEFECT 9: one core per data folder ----------------------------------------------------
def test_a_second_core_on_the_same_data_is_refused(core):
    second = kiosk(core.config, "run")
    assert second.returncode == 2
    assert "already running" in second.stderr
    with ApiClient(core.socket, timeout=10) as client:  # the first one's socket still works
        client.connect()
        assert client.request("snapshot")["screen"] in ("idle", "starting")


# -- DEFECT 8: configuration errors before any side effect ---------------------------------
@pytest.mark.parametrize(
    ("extra", "key"),
    [
        (
            '[acceptor]\nkind = "ccnet"\nport = "/dev/null"\nprofile = "no_such_unit"\n',
            "acceptor.profile",
        ),
        (
            '[acceptor]\nkind = "ccnet"\nport = "/dev/null"\n'
            f'profile = "{ROOT / "firmware_profiles" / "jcm_uba.toml"}"\n',
            "acceptor.profile",
        ),
        (
            '[mqtt]\nenabled = true\n[mqtt.desk_keys]\n"desk1" = "not base64 at all!"\n',
            "mqtt.desk_keys.desk1",
        ),
        ("[acceptor]\nack_delay_ms = -5\n", "acceptor.ack_delay_ms"),
        (
            '[mqtt]\nenabled = true\ntls_ca = "no/such/ca.pem"\n',
            "mqtt.tls_ca",
        ),
    ],
)
def test_config_errors_are_one_line_in_check_config_and_run(tmp_path, extra, key):
    config = write_config(tmp_path, extra)
    checked = kiosk(config, "check-config")
    assert checked.returncode == 2, checked.stdout
    lines = checked.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0] and key in lines[0], checked.stderr
    ran = kiosk(config, "run")
    assert ran.returncode == 2
    assert "Traceback" not in ran.stderr and key in ran.stderr
    assert not (tmp_path / "data" / "ledger.sqlite").exists()
    assert not (tmp_path / "data" / "keys").exists()


# -- DEFECT 9: a socket folder the agent did not create keeps its mode ---------------------
def test_existing_runtime_dir_is_not_chmodded(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chmod(run_dir, 0o755)
    c = Core(write_config(tmp_path), tmp_path)
    c.start()
    try:
        assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o755
    finally:
        assert c.stop() == 0


# -- DEFECT 9: technician sessions -----------------------------------------------------------
def test_pin_lockout_survives_a_restart(core):
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        for _ in range(5):
            with pytest.raises(ApiRequestError):
                client.request("tech.login", pin="0000")
    assert core.stop() == 0
    core.start()
    with ApiClient(core.socket, timeout=10) as client:
        client.connect()
        with pytest.raises(ApiRequestError) as exc:
            client.request("tech.login", pin="1234")
        assert exc.value.code == "locked"


def test_technician_token_and_logout_belong_to_their_connection(core):
    with ApiClient(core.socket, timeout=10) as tech, ApiClient(core.socket, timeout=10) as other:
        tech.connect()
        other.connect()
        token = tech.request("tech.login", pin="1234")["token"]
        with pytest.raises(ApiRequestError) as exc:
            other.request("tech.logout")  # no token, not the technician's connection
        assert exc.value.code == "not_authorized"
        with pytest.raises(ApiRequestError) as exc:
            other.request("tech.counters", token=token)  # a token overheard elsewhere
        assert exc.value.code == "not_authorized"
        assert tech.request("tech.counters", token=token)["bill_count"] == 0  # still in
        tech.request("tech.logout")
        with pytest.raises(ApiRequestError):
            tech.request("tech.counters", token=token)


# -- DEFECT 9: odd local-API inputs ----------------------------------------------------------
ODD_MESSAGES = [
    b'{"v": 1, "id": 1, "op": "payments", "offset": 100000000000000000000000}\n',
    b'{"v": 1, "id": 2, "op": "payment_status", "payment_id": "\\ud800"}\n',
    b'{"v": 1, "id": 3, "op": "intent", "intent": "start", "args": {"x": '
    + b"[" * 5000
    + b"]" * 5000
    + b"}}\n",
    b'{"v": true, "id": 4, "op": "snapshot"}\n',
]


def test_odd_inputs_are_bad_requests_not_internal_errors(core):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(core.socket))
    reader = sock.makefile("rb")
    for raw in ODD_MESSAGES:
        sock.sendall(raw)
        reply = json.loads(reader.readline())
        assert reply["ok"] is False, raw[:60]
        assert reply["error"]["code"] == "bad_request", (raw[:60], reply)
    with ApiClient(core.socket, timeout=10) as tech:  # a technician's op, same rule
        tech.connect()
        token = tech.request("tech.login", pin="1234")["token"]
        with pytest.raises(ApiRequestError) as exc:
            tech.request("tech.events", token=token, limit=10**30)
        assert exc.value.code == "bad_request"
    sock.close()


def test_ledger_init_without_a_running_core(core):
    _pay(core, [100])
    assert core.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        Path(str(core.ledger) + suffix).unlink(missing_ok=True)
    wrong = kiosk(core.config, "ledger", "init", "--new", "--yes", env={"KIOSK_PIN": "9999"})
    assert wrong.returncode == 1 and "wrong PIN" in wrong.stderr
    assert not core.ledger.exists()
    done = kiosk(core.config, "ledger", "init", "--new", "--yes", env={"KIOSK_PIN": "1234"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["payment_numbers_from"] > PAYMENT_BLOCK
    again = kiosk(core.config, "ledger", "init", "--new", "--yes", env={"KIOSK_PIN": "1234"})
    assert again.returncode == 1 and "nothing to do" in again.stderr  # never a healthy one
    core.start()
    paid = _pay(core, [50])  # in service at once, numbering above the lost ledger's
    assert int(paid["payment_id"].split("-")[1]) > PAYMENT_BLOCK
