"""build_ccnet_acceptor (what kiosk/devices.py calls): profile choice, logs, table cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivers.acceptor import AcceptorStatus
from drivers.ccnet.factory import (
    BILL_TABLE_CACHE_NAME,
    FRAME_LOG_NAME,
    acceptor_profile,
    build_ccnet_acceptor,
)
from drivers.profiles import Profile, ProfileError

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def profile_dir(tmp_path: Path, fast_profile: Profile) -> Path:
    """Two fast CCNET profiles: a generic first one and one that matches "SM-" parts."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    text = fast_profile.path.read_text()
    (folder / "a_generic.toml").write_text(
        text.replace('name = "test_fast_ccnet"', 'name = "a_generic"')
        .replace('patterns = ["^SM-"]', 'patterns = ["^NOTHING"]'))
    (folder / "b_sm.toml").write_text(
        text.replace('name = "test_fast_ccnet"', 'name = "b_sm"')
        .replace("poll_ms = 20", "poll_ms = 25"))
    (folder / "printer.toml").write_text(
        text.replace('name = "test_fast_ccnet"', 'name = "some_printer"')
        .replace('kind = "acceptor"', 'kind = "printer"'))
    return folder


def test_empty_profile_detects_from_identification(
    sim, listener, profile_dir: Path, tmp_path: Path, wait_until
) -> None:
    logs = tmp_path / "log"
    acceptor = build_ccnet_acceptor(sim.path, "", logs, profile_dir)
    acceptor.start(listener)
    try:
        assert acceptor.wait_ready(5)
        assert acceptor.info.profile == "b_sm"
        assert acceptor.status is AcceptorStatus.DISABLED
    finally:
        acceptor.stop()
    assert "TX 02 03 06 30 41 b3" in (logs / FRAME_LOG_NAME).read_text()
    cached = json.loads((logs / BILL_TABLE_CACHE_NAME).read_text())
    assert {"bill_type": 5, "amount_minor": 50000, "currency": "RUB"} in cached


def test_named_profile_and_errors(profile_dir: Path) -> None:
    assert acceptor_profile("b_sm", profile_dir).name == "b_sm"
    with pytest.raises(ProfileError, match="one of: a_generic, b_sm"):
        acceptor_profile("cashcode_zz", profile_dir)
    with pytest.raises(ProfileError, match="not acceptor/ccnet"):
        build_ccnet_acceptor("/dev/null", str(profile_dir / "printer.toml"), None, profile_dir)


def test_cache_names_a_stacked_bill_after_a_crash_before_ack(
    sim, listener, profile_dir: Path, tmp_path: Path, wait_until
) -> None:
    """kill -9 between the stacked report and its ACK; the new process uses the cache."""
    logs = tmp_path / "log"
    first = build_ccnet_acceptor(sim.path, "b_sm", logs, profile_dir)
    first.start(listener)
    try:
        assert first.wait_ready(5)
        first.enable([50000])
        wait_until(lambda: first.status is AcceptorStatus.IDLE)
        listener.fail_stacked = 10**6
        sim.command("insert 500")
        wait_until(lambda: listener.stacked_calls, what="stacked offered")
    finally:
        first.stop()
    listener.fail_stacked = 0
    second = build_ccnet_acceptor(sim.path, "b_sm", logs, profile_dir)
    second.start(listener)
    try:
        wait_until(lambda: listener.ledger, what="credit named by the cache")
        (stacked,) = listener.ledger.values()
        assert stacked.recovered and stacked.bill.amount_minor == 50000
        assert second.wait_ready(5)
    finally:
        second.stop()
    assert sim.counters.stacked == 1
