"""The local API against the real core daemon: snapshots, intents, typed errors for bad
messages without dropping the connection, technician PIN rules, and the CLI."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from kiosk.api_client import ApiClient, ApiRequestError
from kiosk.scripted import inbox_feeder, run_payment
from tests.core.daemon import Core, write_config


@pytest.fixture
def core(tmp_path):
    c = Core(write_config(tmp_path), tmp_path)
    c.start()
    yield c
    assert c.stop() == 0, "".join(c.log)


@pytest.fixture
def client(core):
    with ApiClient(core.socket) as cl:
        cl.connect()
        yield cl


def test_hello_returns_snapshot_with_support_phone(client):
    assert client.snapshot["screen"] == "idle"
    assert client.snapshot["terminal"]["support_phone"] == "8 800 555-35-35"


def test_socket_is_private_to_kiosk_user_and_group(core):
    mode = stat.S_IMODE(os.stat(core.socket).st_mode)
    assert mode == 0o660
    assert stat.S_IMODE(os.stat(core.socket.parent).st_mode) == 0o750


def test_snapshots_are_pushed_on_every_change(client):
    client.intent("start")
    snap = client.wait_for(lambda s: s["screen"] == "provider", timeout=5)
    assert snap["seq"] > 0
    client.intent("cancel")
    client.wait_for(lambda s: s["screen"] == "idle", timeout=5)


def test_scripted_payment_through_the_api(core, client):
    result = run_payment(client, "mts", "9161234567", [500, 100], inbox_feeder(core.inbox))
    assert result["inserted_minor"] == 60_000
    assert result["receipt"] == "printed"
    assert result["payment_id"] == "T0001-00000001"
    code = result["check_code"]  # the receipt screen shows it; the receipt carries it
    status = client.request("payment_status", payment_id=result["payment_id"], check_code=code)
    assert status["status"] == "queued" and status["credited_minor"] == 58_200
    payments = client.request("payments", limit=5)
    assert [p["id"] for p in payments] == ["T0001-00000001"]
    assert "check_code" not in payments[0]  # no client of the socket lists the codes
    receipt = (core.workdir / "data" / "receipts").glob("*.txt")
    assert any("T0001-00000001" in p.read_text() for p in receipt)


BAD_MESSAGES = [
    (b"not json\n", "bad_json"),
    (b"[1, 2]\n", "bad_json"),
    (b'{"v": 1, "id": 7, "op": "warp"}\n', "unknown_op"),
    (b'{"v": 2, "id": 7, "op": "snapshot"}\n', "bad_version"),
    (b'{"v": 1, "id": 7, "op": "intent"}\n', "bad_request"),
    (b'{"v": 1, "id": 7, "op": "intent", "intent": 5}\n', "bad_request"),
    (b'{"v": 1, "id": 7, "op": "intent", "intent": "pay"}\n', "wrong_screen"),
    (
        b'{"v": 1, "id": 7, "op": "intent", "intent": "select_provider", "args": []}\n',
        "bad_request",
    ),
    (b'{"v": 1, "id": 7, "op": "payments", "limit": -1}\n', "bad_request"),
    (b'{"v": 1, "id": {"x": 1}, "op": "snapshot"}\n', "bad_request"),
    (b"\xff\xfe\n", "bad_json"),
    (b'{"v": 1, "id": 7, "op": "tech.encash", "token": "guess"}\n', "not_authorized"),
]


def test_bad_messages_get_typed_errors_and_the_connection_survives(core):
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(core.socket))
    reader = sock.makefile("rb")
    for raw, code in BAD_MESSAGES:
        sock.sendall(raw)
        reply = json.loads(reader.readline())
        assert reply["ok"] is False, raw
        assert reply["error"]["code"] == code, (raw, reply)
        assert reply["error"]["message"]
    sock.sendall(b"x" * 200_000 + b"\n")  # too long: refused, skipped, still connected
    reply = json.loads(reader.readline())
    assert reply["error"]["code"] == "too_long"
    sock.sendall(b'{"v": 1, "id": "after", "op": "snapshot"}\n')
    reply = json.loads(reader.readline())
    assert reply["ok"] is True and reply["id"] == "after"
    sock.close()
    with ApiClient(core.socket) as other:  # and the core serves others as before
        other.connect()
        assert other.request("snapshot")["screen"] == "idle"


def test_technician_pin_lockout_and_events(core, client):
    for _ in range(4):
        with pytest.raises(ApiRequestError) as exc:
            client.request("tech.login", pin="0000")
        assert exc.value.code == "wrong_pin"
    with pytest.raises(ApiRequestError) as exc:
        client.request("tech.login", pin="0000")
    assert exc.value.code == "locked"
    with pytest.raises(ApiRequestError) as exc:
        client.request("tech.login", pin="1234")  # even the right PIN, while locked
    assert exc.value.code == "locked"


def test_technician_operations_need_a_session(core, client):
    with pytest.raises(ApiRequestError) as exc:
        client.request("tech.counters", token="")
    assert exc.value.code == "not_authorized"
    token = client.request("tech.login", pin="1234")["token"]
    counters = client.request("tech.counters", token=token)
    assert counters["bill_count"] == 0
    client.request("tech.test_print", token=token)  # an action: recorded for the desk
    events = client.request("tech.events", token=token, limit=10, device="technician")
    assert [e["kind"] for e in events] == ["technician_action", "technician_login"]
    assert events[0]["data"] == {"op": "tech.test_print", "channel": "shell"}
    client.request("tech.logout")
    with pytest.raises(ApiRequestError):
        client.request("tech.counters", token=token)


def kiosk_cli(core, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "kiosk", *args, "--config", str(core.config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_pay_status_payments_and_diag(core):
    paid = kiosk_cli(
        core, "pay", "--provider", "beeline", "--account", "9031234567", "--bills", "100,50"
    )
    assert paid.returncode == 0, paid.stderr
    payment = json.loads(paid.stdout)
    assert payment["inserted_minor"] == 15_000
    listing = kiosk_cli(core, "payments", "--json")
    assert json.loads(listing.stdout)[0]["id"] == payment["payment_id"]
    status = kiosk_cli(core, "status")
    assert "8 800 555-35-35" in status.stdout and "2 bills" in status.stdout
    counters = kiosk_cli(core, "diag", "counters", env={"KIOSK_PIN": "1234"})
    assert json.loads(counters.stdout)["total_minor"] == 15_000
    encash = kiosk_cli(core, "diag", "encash", env={"KIOSK_PIN": "1234"})
    report = json.loads(encash.stdout)
    assert report["total_minor"] == 15_000 and report["printed"] is True
    wrong = kiosk_cli(core, "diag", "counters", env={"KIOSK_PIN": "9999"})
    assert wrong.returncode == 1 and "wrong PIN" in wrong.stderr


def test_cli_without_core_says_so(tmp_path):
    config = write_config(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "core is not running" in result.stderr


def test_technician_restart_stops_the_core_cleanly(core, client):
    token = client.request("tech.login", pin="1234")["token"]
    assert client.request("tech.restart", token=token) == {"restarting": True}
    assert core.proc.wait(timeout=15) == 0  # systemd (Restart=always) starts it again
    core.drain_output()
    assert "stopped for a restart" in "".join(core.log)


def test_catalog_lists_providers_with_their_commission_bands(client):
    catalog = client.request("catalog")
    mts = next(p for p in catalog["providers"] if p["id"] == "mts")
    assert mts["account_mask"] == "+7 (***) ***-**-**"
    assert mts["bands"][1] == {"from_minor": 50_000, "to_minor": None, "percent_bp": 300,
                               "fixed_minor": 0, "min_minor": 1_000, "max_minor": 30_000}
    assert {c["id"] for c in catalog["categories"]} == {"mobile", "internet", "utilities"}


def _refused(client, op, **fields):
    with pytest.raises(ApiRequestError) as err:
        client.request(op, **fields)
    return err.value.code, err.value.message


def test_check_my_payment_needs_the_code_and_the_limit_outlives_the_client(core, client):
    """Payment ids are sequential: the id alone shows nothing, a wrong pair gets the same
    answer whether the id exists or not, and the pause after too many wrong pairs is the
    core's, so a new connection (a restarted UI) is still refused."""
    result = run_payment(client, "mts", "9161234567", [500], inbox_feeder(core.inbox))
    pid, code = result["payment_id"], result["check_code"]
    assert _refused(client, "payment_status", payment_id=pid)[0] == "bad_request"
    assert _refused(client, "payment_status", payment_id=pid, check_code=1)[0] == "bad_request"
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    answers = {
        _refused(client, "payment_status", payment_id=pid, check_code=wrong),
        _refused(client, "payment_status", payment_id="T0001-00000002", check_code=code),
        _refused(client, "customer_reprint", payment_id="T0001-00000077", check_code=wrong),
    }
    assert answers == {("not_found", answers.copy().pop()[1])}
    copy = client.request("customer_reprint", payment_id=pid, check_code=code)
    assert copy == {"payment_id": pid, "printed": True}
    assert _refused(client, "payment_status", payment_id=pid, check_code="x")[0] == "not_found"
    assert _refused(client, "payment_status", payment_id=pid, check_code="x")[0] == (
        "check_locked"
    )
    with ApiClient(core.socket) as again:  # the UI restarted
        again.connect()
        locked = _refused(again, "payment_status", payment_id=pid, check_code=code)
    assert locked[0] == "check_locked"
    receipts = sorted((core.workdir / "data" / "receipts").glob("*.txt"))
    assert "КОПИЯ / COPY" in receipts[-1].read_text() and code in receipts[-1].read_text()
