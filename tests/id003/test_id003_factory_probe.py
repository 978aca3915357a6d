"""JCM firmware profiles, build_id003_acceptor (what kiosk/devices.py will call), and
`kiosk devices probe` finding ID-003 units next to CCNET ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from drivers.acceptor import AcceptorStatus
from drivers.id003.device import default_opener
from drivers.id003.factory import (
    BILL_TABLE_CACHE_NAME,
    FRAME_LOG_NAME,
    STACK_MARKER_NAME,
    acceptor_profile,
    build_id003_acceptor,
    id003_profiles,
)
from drivers.id003.settings import Id003Settings
from drivers.id003.states import Status
from drivers.id003.timing import Id003Timing
from drivers.probe import PROBERS, format_table, main, probe
from drivers.profiles import (
    Profile,
    ProfileError,
    SerialSettings,
    find_profile,
    load_profile,
    load_profiles,
)
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import SimTiming as CcnetSimTiming
from drivers.transport import open_pty
from tests.id003.conftest import write_profile

pytestmark = pytest.mark.timeout(60)

SHIPPED = ("jcm_uba", "jcm_ivizion")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_validate(profiles: dict[str, Profile], name: str) -> None:
    prof = profiles[name]
    assert (prof.kind, prof.protocol) == ("acceptor", "id003")
    assert prof.serial == SerialSettings(9600, 8, "E", 1)  # 9600 8E1 (id003.md)
    timing = Id003Timing.from_profile(prof)
    assert timing.poll_s == pytest.approx(0.2)
    assert timing.link.attempts == 3
    assert timing.link.ident_timeout_s >= timing.link.response_timeout_s
    settings = Id003Settings.from_profile(prof)
    assert settings.power_recovery and settings.currency is None


@pytest.mark.parametrize(("version", "name"), [
    ("U(RUS)-SS ID003-05V210-10 12MAR19 5A3C", "jcm_uba"),
    ("U(GBR5)-700-SH2-RTQ ID003-05V005-00 21FEB25", "jcm_uba"),
    ("i(USA)100-SS ID003-05V280-42 01AUG17 964D", "jcm_ivizion"),
    ("i(RUS)100-SS ID003-05V280-42 01AUG17 964D", "jcm_ivizion"),
])
def test_version_strings_pick_the_right_profile(
    profiles: dict[str, Profile], version: str, name: str
) -> None:
    assert find_profile(profiles, "acceptor", "id003", version).name == name


def test_ccnet_part_numbers_do_not_match_jcm_profiles(profiles: dict[str, Profile]) -> None:
    with pytest.raises(ProfileError, match="no id003 acceptor profile"):
        find_profile(profiles, "acceptor", "id003", "SM-RU1353")


@pytest.mark.parametrize(("old", "new", "key"), [
    ("poll_ms = 20", "", "timing.poll_ms"),
    ("poll_ms = 20", "poll_ms = 0", "timing.poll_ms"),
    ("stuck_state_s = 0.8", "stuck_state_s = -1.0", "timing.stuck_state_s"),
])
def test_bad_timing_names_file_and_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write_profile(tmp_path, "broken", **{old: new})
    with pytest.raises(ProfileError, match=f"{path}.*{key}"):
        Id003Timing.from_profile(load_profile(path))


def test_a_pty_reopens_at_8e1(sim) -> None:
    """A pty has no parity: the second 8E1 open of the same pty must still work."""
    settings = SerialSettings(9600, 8, "E", 1)
    for _ in range(3):
        default_opener(sim.path, settings).close()


# -- the factory ----------------------------------------------------------------------------


@pytest.fixture
def profile_dir(tmp_path: Path) -> Path:
    """Two fast ID-003 profiles (a generic first one, one that matches "U(" versions),
    a CCNET one and a printer one that the factory must skip."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    write_profile(folder, "a_generic", **{'patterns = ["^U\\\\("]': 'patterns = ["^NOTHING"]',
                                         "power_recovery = true": "power_recovery = false"})
    write_profile(folder, "b_uba", **{"poll_ms = 20": "poll_ms = 25"})
    write_profile(folder, "c_ccnet", **{'protocol = "id003"': 'protocol = "ccnet"',
                                       'parity = "even"': 'parity = "none"'})
    write_profile(folder, "d_printer", **{'kind = "acceptor"': 'kind = "printer"'})
    return folder


def test_profiles_of_the_factory(profile_dir: Path) -> None:
    assert [p.name for p in id003_profiles(profile_dir)] == ["a_generic", "b_uba"]
    assert acceptor_profile("b_uba", profile_dir).name == "b_uba"
    with pytest.raises(ProfileError, match="one of: a_generic, b_uba"):
        acceptor_profile("jcm_zz", profile_dir)
    with pytest.raises(ProfileError, match="not acceptor/id003"):
        build_id003_acceptor("/dev/null", str(profile_dir / "c_ccnet.toml"), None,
                             directory=profile_dir)
    with pytest.raises(ProfileError, match="no ID-003 acceptor profiles"):
        build_id003_acceptor("/dev/null", "", None, directory=profile_dir / "nothing")


def test_empty_profile_detects_from_the_version(
    sim, listener, profile_dir: Path, tmp_path: Path, wait_until
) -> None:
    logs, state = tmp_path / "log", tmp_path / "state"
    acceptor = build_id003_acceptor(sim.path, "", logs, state_dir=state, directory=profile_dir)
    acceptor.start(listener)
    try:
        assert acceptor.wait_ready(5)
        assert acceptor.info.profile == "b_uba"
        # the starting profile had power recovery off; the detected one has it on
        wait_until(lambda: sim.model.power_recovery, what="power recovery set again")
        assert acceptor.status is AcceptorStatus.DISABLED and sim.model.inhibited
    finally:
        acceptor.stop()
    assert "TX fc 05 40 2b 15" in (logs / FRAME_LOG_NAME).read_text()
    cached = json.loads((state / BILL_TABLE_CACHE_NAME).read_text())
    assert {"bill_type": 0x64, "amount_minor": 50000, "currency": "RUB"} in cached


def test_crash_before_ack_is_named_by_the_state_folder(
    sim, listener, profile_dir: Path, tmp_path: Path, wait_until
) -> None:
    """kill -9 between VEND VALID and its ACK; the next process names the bill from the
    stack marker in the state folder."""
    logs = tmp_path / "log"
    first = build_id003_acceptor(sim.path, "b_uba", logs, directory=profile_dir)
    first.start(listener)
    try:
        assert first.wait_ready(5)
        first.enable([50000])
        wait_until(lambda: first.status is AcceptorStatus.IDLE)
        listener.fail_stacked = 10**6
        sim.command("insert 500")
        wait_until(lambda: listener.stacked_calls, what="vend valid offered")
    finally:
        first.stop()
    assert json.loads((logs / STACK_MARKER_NAME).read_text())["open"] is True
    listener.fail_stacked = 0
    second = build_id003_acceptor(sim.path, "b_uba", logs, directory=profile_dir)
    second.start(listener)
    try:
        wait_until(lambda: listener.ledger, what="credit named by the marker")
        (stacked,) = listener.ledger.values()
        assert stacked.recovered and stacked.bill.amount_minor == 50000
        assert second.wait_ready(5)
    finally:
        second.stop()
    assert sim.counters.stacked == 1
    assert json.loads((logs / STACK_MARKER_NAME).read_text())["open"] is False


# -- probe ------------------------------------------------------------------------------------


def test_probe_registry_has_both_protocols() -> None:
    assert {"ccnet", "id003"} <= set(PROBERS)


def test_probe_identifies_the_simulator_with_the_uba_profile(sim, profiles) -> None:
    fast = {n: p for n, p in profiles.items() if p.protocol == "id003"}
    (result,) = probe([sim.path], fast)
    assert result.found
    assert (result.protocol, result.profile) == ("id003", "jcm_uba")
    assert result.part_number == "U(RUS)-SS ID003-05V210-10 12MAR19 5A3C"
    assert [b.amount_minor for b in result.bill_table][:2] == [1000, 5000]
    assert result.serial_settings == SerialSettings(9600, 8, "E", 1)
    # nothing that changes the unit's state was sent
    assert sim.counters.resets == 0 and sim.counters.polls == 0
    assert sim.model.base == Status.POWER_UP


def quick_copies(profiles: dict[str, Profile], folder: Path) -> dict[str, Profile]:
    """The shipped acceptor profiles with a short identification timeout: a port that does
    not speak a protocol costs attempts × ident timeout before the next one is tried."""
    folder.mkdir()
    for name, prof in profiles.items():
        if prof.kind == "acceptor":
            text = re.sub(r"ident_timeout_ms = \d+", "ident_timeout_ms = 200",
                          prof.path.read_text())
            (folder / f"{name}.toml").write_text(text)
    return load_profiles(folder)


def test_probe_tells_ccnet_and_id003_apart(sim, tmp_path: Path, profiles) -> None:
    profiles = quick_copies(profiles, tmp_path / "quick")
    ccnet = CcnetSimulator(link=tmp_path / "ttyCC", timing=CcnetSimTiming(init_s=0.05)).start()
    ivizion = None
    try:
        from drivers.sim.id003 import Id003Simulator

        ivizion = Id003Simulator(link=tmp_path / "ttyIV",
                                 version="i(RUS)100-SS ID003-05V280-42 01AUG17 964D").start()
        found = probe([ccnet.path, sim.path, ivizion.path], profiles)
    finally:
        ccnet.stop()
        if ivizion is not None:
            ivizion.stop()
    assert [(r.protocol, r.profile) for r in found] == [
        ("ccnet", "cashcode_sm"), ("id003", "jcm_uba"), ("id003", "jcm_ivizion")]


def test_probe_reports_a_unit_that_refuses(sim, listener, running, wait_until,
                                           fast_profile) -> None:
    silent = open_pty()
    try:
        sim.with_model(lambda m: setattr(m, "version", ""))  # a unit with no version text
        running.stop()
        result, quiet = probe([sim.path, silent.path], {"fast": fast_profile})
    finally:
        silent.close()
    assert result.protocol == "id003" and result.part_number == ""
    assert result.profile is None and len(result.bill_table) == 8
    assert not quiet.found and quiet.detail == "no known acceptor answered"


def test_probe_cli_table_and_json(sim, profiles, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    folder = tmp_path / "only_id003"
    folder.mkdir()
    for name in SHIPPED:
        (folder / f"{name}.toml").write_text(profiles[name].path.read_text())
    assert main(["--profiles", str(folder), sim.path]) == 0
    table = capsys.readouterr().out
    assert "id003" in table and "jcm_uba" in table and "100:500RUB" in table
    assert main(["--json", "--profiles", str(folder), sim.path]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["profile"] == "jcm_uba" and item["bill_table"][0]["amount_minor"] == 1000
    assert format_table([]).startswith("PORT")


def test_the_terminal_currency_reaches_the_driver(tmp_path: Path) -> None:
    """kiosk/devices.py passes [terminal] currency: the driver's unusable-table rule
    (issue 12) and its enable filter use the terminal's currency."""
    import dataclasses

    from kiosk.config import AcceptorConfig, TerminalConfig
    from kiosk.devices import build_acceptor
    from tests.conftest import config_in

    base = config_in(tmp_path)
    for kind in ("id003", "ccnet"):
        config = dataclasses.replace(
            base, terminal=dataclasses.replace(base.terminal, currency="KZT"),
            acceptor=AcceptorConfig(kind=kind, port=str(tmp_path / "nothing")))
        assert isinstance(config.terminal, TerminalConfig)
        acceptor = build_acceptor(config)
        assert acceptor._currency == "KZT"  # type: ignore[attr-defined]


def test_probe_cli_currency_flags_a_unit_without_that_currency(
    sim, profiles, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = tmp_path / "only_id003"
    folder.mkdir()
    for name in SHIPPED:
        (folder / f"{name}.toml").write_text(profiles[name].path.read_text())
    assert main(["--currency", "RUB", "--profiles", str(folder), sim.path]) == 0
    assert "UNUSABLE" not in capsys.readouterr().out
    assert main(["--currency", "USD", "--profiles", str(folder), sim.path]) == 0
    assert "UNUSABLE: no USD note in its bill table" in capsys.readouterr().out
