"""Technician sessions per channel with one shared lockout, refusals as code + data, the
events list without the technician's page views, and the offline `kiosk ledger init`
counting against the same lockout. Real core daemon, real state file, real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.api_client import ApiClient, ApiRequestError
from kiosk.config import TechnicianConfig
from kiosk.pin import hash_pin
from kiosk.technician import LOCKOUT_FILE, Channel, TechnicianAccess, TechnicianAuthError
from tests.core.daemon import Core, write_config

PIN = "1234"  # the PIN whose hash tests/core/daemon.py writes


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _access(path: Path, clock: Clock) -> TechnicianAccess:
    config = TechnicianConfig(pin_hash=hash_pin(PIN), max_attempts=5, lockout_s=300,
                              session_timeout_s=300)
    return TechnicianAccess(config, clock, path, wall=lambda: 1_700_000_000.0 + clock.t)


def test_a_shell_login_leaves_the_screen_session_alone(tmp_path: Path) -> None:
    clock = Clock()
    access = _access(tmp_path / LOCKOUT_FILE, clock)
    screen = access.login(PIN, Channel.SCREEN)
    shell = access.login(PIN, Channel.SHELL)
    assert access.check(screen) is Channel.SCREEN, "the shell login did not end it"
    assert access.check(shell) is Channel.SHELL
    access.logout(shell)
    assert access.check(screen) is Channel.SCREEN, "the shell's logout is its own"
    with pytest.raises(TechnicianAuthError) as exc:
        access.check(shell)
    assert exc.value.code == "not_authorized"
    again = access.login(PIN, Channel.SCREEN)  # a new screen login replaces the screen's
    with pytest.raises(TechnicianAuthError):
        access.check(screen)
    assert access.check(again) is Channel.SCREEN
    clock.t += 301
    with pytest.raises(TechnicianAuthError) as exc:
        access.check(again)
    assert exc.value.code == "session_expired"


def test_guessing_on_both_channels_meets_the_one_lockout(tmp_path: Path) -> None:
    clock = Clock()
    state = tmp_path / LOCKOUT_FILE
    access = _access(state, clock)
    left = []
    for i in range(4):
        with pytest.raises(TechnicianAuthError) as exc:
            access.login("0000", Channel.SCREEN if i % 2 else Channel.SHELL)
        assert exc.value.code == "wrong_pin"
        left.append(exc.value.data["attempts_left"])
    assert left == [4, 3, 2, 1]
    with pytest.raises(TechnicianAuthError) as exc:
        access.login("0000", Channel.SCREEN)
    assert exc.value.code == "locked"
    assert exc.value.data == {"retry_after_s": 300, "lockout_s": 300}
    for channel in Channel:  # the right PIN, on either channel, waits too
        with pytest.raises(TechnicianAuthError) as exc:
            access.login(PIN, channel)
        assert exc.value.code == "locked"
    clock.t += 100
    with pytest.raises(TechnicianAuthError) as exc:
        _access(state, clock).login(PIN, Channel.SHELL)  # another process, same file
    assert exc.value.data["retry_after_s"] == 200
    clock.t += 201
    assert access.login(PIN, Channel.SHELL)


# -- through the real core ---------------------------------------------------------------
@pytest.fixture
def core(tmp_path: Path):
    c = Core(write_config(tmp_path), tmp_path)
    c.start()
    yield c
    assert c.stop() == 0, "".join(c.log)


def kiosk(config: Path, *args: str, pin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kiosk", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "KIOSK_PIN": pin},
    )


def test_kiosk_diag_on_the_shell_does_not_end_the_touchscreen_session(core: Core) -> None:
    with ApiClient(core.socket) as ui:
        ui.connect(subscribe=False)
        token = ui.request("tech.login", pin=PIN, channel="screen")["token"]
        diag = kiosk(core.config, "diag", "counters", pin=PIN)  # logs in and out itself
        assert diag.returncode == 0, diag.stderr
        assert ui.request("tech.counters", token=token)["bill_count"] == 0
        events = ui.request("tech.events", token=token, device="technician", limit=10)
        assert [e["data"]["channel"] for e in events if e["kind"] == "technician_login"] == [
            "shell", "screen"]
        ui.request("tech.logout")
        with pytest.raises(ApiRequestError) as exc:
            ui.request("tech.counters", token=token)
        assert exc.value.code == "not_authorized"


def test_brute_force_over_screen_and_shell_hits_the_one_lockout(core: Core) -> None:
    with ApiClient(core.socket) as ui:
        ui.connect(subscribe=False)
        for _ in range(3):
            with pytest.raises(ApiRequestError) as exc:
                ui.request("tech.login", pin="0000", channel="screen")
            assert exc.value.code == "wrong_pin"
        assert exc.value.data == {"attempts_left": 2, "max_attempts": 5}
        shell = kiosk(core.config, "diag", "counters", pin="0000")
        assert shell.returncode == 1
        assert "осталось попыток: 1" in shell.stderr and "1 attempt(s) left" in shell.stderr
        shell = kiosk(core.config, "diag", "counters", pin="0000")
        assert "заблокирован" in shell.stderr and "locked" in shell.stderr
        with pytest.raises(ApiRequestError) as exc:
            ui.request("tech.login", pin=PIN, channel="screen")
        assert exc.value.code == "locked" and exc.value.data["retry_after_s"] > 0
    with pytest.raises(ApiRequestError) as exc, ApiClient(core.socket) as other:
        other.connect(subscribe=False)
        other.request("tech.login", pin=PIN, channel="nowhere")
    assert exc.value.code == "bad_request"


def test_page_views_are_not_events_and_the_list_filters(core: Core) -> None:
    with ApiClient(core.socket) as ui:
        ui.connect(subscribe=False)
        token = ui.request("tech.login", pin=PIN, channel="screen")["token"]
        for _ in range(30):  # a technician flipping between pages
            ui.request("tech.counters", token=token)
            ui.request("tech.events", token=token, limit=5)
            ui.request("tech.acceptor_test_results", token=token)
        ui.request("tech.test_print", token=token)
        every = ui.request("tech.events", token=token, device="all", limit=1000)
        kinds = [e["kind"] for e in every]
        assert kinds.count("technician_action") == 1, "only the test print is an action"
        assert kinds.count("technician_login") == 1
        default = ui.request("tech.events", token=token, limit=1000)
        assert not [k for k in (e["kind"] for e in default) if k.startswith("technician_")]
        assert len(default) == len(every) - 2
        problems = ui.request("tech.events", token=token, device="all", severity="warning",
                              limit=1000)
        assert all(e["severity"] in ("warning", "error") for e in problems)
        assert len(problems) < len(every)
        with pytest.raises(ApiRequestError) as exc:
            ui.request("tech.events", token=token, device="toaster")
        assert exc.value.code == "bad_request"
        assert exc.value.data["field"] == "device"
    status = subprocess.run(
        [sys.executable, "-m", "kiosk", "status", "--config", str(core.config)],
        capture_output=True, text=True, timeout=60,
    )
    assert "mqtt          off ([mqtt] enabled = false)" in status.stdout, status.stdout


def test_offline_ledger_init_counts_against_and_respects_the_lockout(core: Core) -> None:
    assert core.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        Path(str(core.ledger) + suffix).unlink(missing_ok=True)
    for n in (4, 3, 2, 1):
        wrong = kiosk(core.config, "ledger", "init", "--new", "--yes", pin="9999")
        assert wrong.returncode == 1 and f"{n} attempt(s) left" in wrong.stderr
    locked = kiosk(core.config, "ledger", "init", "--new", "--yes", pin="9999")
    assert "locked" in locked.stderr and "заблокирован" in locked.stderr
    right = kiosk(core.config, "ledger", "init", "--new", "--yes", pin=PIN)
    assert right.returncode == 1 and "locked" in right.stderr, "the right PIN waits too"
    assert not core.ledger.exists(), "nothing was done while locked"
    state = json.loads((core.ledger.parent / LOCKOUT_FILE).read_text())
    assert state["locked_until_wall"] > 0
    core.start()  # the core reads the same lockout
    with ApiClient(core.socket) as ui:
        ui.connect(subscribe=False)
        with pytest.raises(ApiRequestError) as exc:
            ui.request("tech.login", pin=PIN, channel="screen")
        assert exc.value.code == "locked"
