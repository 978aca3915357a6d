"""Firmware profiles for CashCode units, and `drivers.probe` against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drivers.ccnet.device import profile_address
from drivers.ccnet.states import PollState
from drivers.ccnet.timing import CcnetTiming
from drivers.probe import PROBERS, format_table, main, probe
from drivers.profiles import (
    Profile,
    ProfileError,
    find_profile,
    load_profile,
)
from drivers.transport import open_pty

pytestmark = pytest.mark.timeout(30)

SHIPPED = ("cashcode_sm", "cashcode_msm", "cashcode_mfl")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_validate(profiles: dict[str, Profile], name: str) -> None:
    prof = profiles[name]
    assert (prof.kind, prof.protocol) == ("acceptor", "ccnet")
    assert (prof.serial.baudrate, prof.serial.bytesize, prof.serial.parity,
            prof.serial.stopbits) == (9600, 8, "N", 1)
    timing = CcnetTiming.from_profile(prof)
    assert timing.poll_s == pytest.approx(0.1)
    assert timing.active_poll_s == pytest.approx(0.02)
    assert timing.link.attempts == 3
    assert timing.link.ident_timeout_s >= timing.link.response_timeout_s
    assert profile_address(prof) == 0x03


@pytest.mark.parametrize(("part", "name"), [
    ("SM-RU1353", "cashcode_sm"), ("SM-KZ1305", "cashcode_sm"),
    ("MSM-QA1112", "cashcode_msm"), ("MFL-RU1405", "cashcode_mfl"), ("FL-RU1704", "cashcode_mfl"),
])
def test_part_numbers_pick_the_right_profile(
    profiles: dict[str, Profile], part: str, name: str
) -> None:
    assert find_profile(profiles, "acceptor", "ccnet", part).name == name


def test_unknown_part_number_matches_nothing(profiles: dict[str, Profile]) -> None:
    with pytest.raises(ProfileError, match="no ccnet acceptor profile"):
        find_profile(profiles, "acceptor", "ccnet", "NV200")


@pytest.mark.parametrize(("replace", "key"), [
    ("poll_ms = 20", "timing.poll_ms"),  # removed: required
    ("response_timeout_ms = 150", "timing.response_timeout_ms"),
    ("init_timeout_s = 3.0", "timing.init_timeout_s"),
])
def test_missing_timing_key_names_file_and_key(
    tmp_path: Path, fast_profile: Profile, replace: str, key: str
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(fast_profile.path.read_text().replace(replace, ""))
    with pytest.raises(ProfileError, match=f"{path}.*{key}"):
        CcnetTiming.from_profile(load_profile(path))


@pytest.mark.parametrize(("replace", "by", "key"), [
    ("poll_ms = 20", "poll_ms = 0", "timing.poll_ms"),
    ("poll_ms = 20", 'poll_ms = "fast"', "timing.poll_ms"),
    ("stuck_state_s = 0.8", "stuck_state_s = -1.0", "timing.stuck_state_s"),
    ("attempts = 3", "attempts = 0", "timing.attempts"),
    ("[timing]", "[ccnet]\naddress = 9\n[timing]", "ccnet.address"),
])
def test_bad_timing_value_names_file_and_key(
    tmp_path: Path, fast_profile: Profile, replace: str, by: str, key: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(fast_profile.path.read_text().replace(replace, by))
    prof = load_profile(path)

    def validate() -> None:  # what CcnetAcceptor does with a profile
        CcnetTiming.from_profile(prof)
        profile_address(prof)

    with pytest.raises(ProfileError, match=f"{path}.*{key}"):
        validate()


# -- probe ---------------------------------------------------------------------------------


def test_probe_identifies_the_simulator_with_the_sm_profile(sim, profiles) -> None:
    (result,) = probe([sim.path], profiles)
    assert result.found
    assert (result.protocol, result.part_number, result.serial_number, result.profile) == (
        "ccnet", "SM-RU1353", "41A123456789", "cashcode_sm")
    assert [b.amount_minor for b in result.bill_table][:2] == [1000, 5000]
    # nothing that changes the device's state was sent
    assert sim.counters.resets == 0 and sim.counters.polls == 0
    assert sim.model.enabled == frozenset()


def test_probe_matches_other_models(make_sim, profiles) -> None:
    msm = make_sim("ttyMSM", part_number="MSM-QA1112", serial_number="MSM000000001")
    (result,) = probe([msm.path], profiles)
    assert result.profile == "cashcode_msm"


def test_probe_reports_busy_unit_and_silent_port(
    sim, listener, running, wait_until, fast_profile
) -> None:
    from drivers.acceptor import EscrowDecision

    listener.decision = EscrowDecision.HOLD
    sim.command("insert 500")
    wait_until(lambda: listener.escrows)
    running.stop()  # one owner per port: the probe runs when the driver does not
    assert sim.model.base == PollState.HOLDING
    silent = open_pty()  # a port where nobody answers
    try:
        busy, quiet = probe([sim.path, silent.path], {"fast": fast_profile})
    finally:
        silent.close()
    assert busy.protocol == "ccnet" and busy.part_number == ""
    assert "identification refused (illegal command)" in busy.detail
    assert not quiet.found and quiet.detail == "no known acceptor answered"


def test_probe_unopenable_port(profiles) -> None:
    (result,) = probe(["/nonexistent/ttyX"], profiles)
    assert not result.found and "cannot open" in result.detail


def test_probe_cli_table_and_json(sim, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([sim.path]) == 0
    table = capsys.readouterr().out
    assert "cashcode_sm" in table and "SM-RU1353" in table and "5:500RUB" in table
    assert main(["--json", sim.path]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["profile"] == "cashcode_sm" and item["bill_table"][0]["amount_minor"] == 1000
    assert main([]) == 2


def test_probe_registry_is_per_protocol() -> None:
    assert set(PROBERS) == {"ccnet", "id003"}
    assert format_table([]).startswith("PORT")
