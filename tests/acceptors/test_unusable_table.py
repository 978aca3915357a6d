"""Issue 12, defect 4: an acceptor that can take no note of the terminal's currency puts
the terminal out of service, with a reason a technician understands, on both protocols.

Before the fix an ID-003 unit whose currency table carries a JCM country number this
driver does not know had every denomination dropped with one log line: the terminal stayed
in service and every customer reached a cash screen that took nothing. The whole terminal
is real here (tests/acceptors/rig.py): engine, SQLite ledger, the production factory's
driver built with the terminal's currency, the protocol's simulator on a pty.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.acceptor import AcceptorStatus
from drivers.ccnet.billtable import BillRecord
from drivers.ccnet.factory import build_ccnet_acceptor
from drivers.id003.currency import CurrencyRecord
from drivers.id003.factory import build_id003_acceptor
from drivers.probe import format_table, probe
from drivers.profiles import load_profile
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import DEFAULT_BILLS as CCNET_BILLS
from drivers.sim.ccnet_model import SimTiming as CcnetSimTiming
from drivers.sim.id003 import Id003Simulator
from drivers.sim.id003_model import DEFAULT_BILLS as ID003_BILLS
from drivers.sim.id003_model import SimTiming as Id003SimTiming
from kiosk.engine import IntentError
from kiosk.screens import Screen
from tests.acceptors.rig import CCNET, ID003, ProtocolKit, Rig, wait_until

pytestmark = pytest.mark.timeout(60)

UNKNOWN_JCM_COUNTRY = 153
"""Not in drivers.id003.currency.COUNTRY_CURRENCY: this driver cannot name its notes."""


def _id003_foreign(link: Path, _slow: bool, echo: Callable[[str], None]) -> Any:
    records = [CurrencyRecord.for_value(c, v, UNKNOWN_JCM_COUNTRY) for c, v in ID003_BILLS]
    return Id003Simulator(records, link=link, echo=echo,
                          timing=Id003SimTiming(init_s=0.05, stacked_s=0.02))


def _ccnet_tenge(link: Path, _slow: bool, echo: Callable[[str], None]) -> Any:
    records = [BillRecord.for_value(t, v, "KAZ") for t, v in CCNET_BILLS]
    return CcnetSimulator(records, link=link, echo=echo, timing=CcnetSimTiming(init_s=0.05))


KITS = {
    "id003": dataclasses.replace(
        ID003, make_sim=_id003_foreign,
        build=lambda port, profile, logs, data: build_id003_acceptor(
            port, profile, logs, state_dir=data, currency="RUB")),
    "ccnet": dataclasses.replace(
        CCNET, make_sim=_ccnet_tenge,
        build=lambda port, profile, logs, data: build_ccnet_acceptor(
            port, profile, logs, state_dir=data, currency="RUB")),
}
WHY = {
    "id003": "(it names no note); its denominations carry JCM country number 153, unknown "
             "to this driver: set [id003] currency",
    "ccnet": "it has only KZT notes",
}


@pytest.fixture(params=sorted(KITS))
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    kit: ProtocolKit = KITS[request.param]
    built = Rig(tmp_path, kit)
    yield built
    built.close()


def test_no_note_of_the_terminals_currency_puts_the_terminal_out_of_service(rig: Rig) -> None:
    wait_until(lambda: rig.engine.reconciled and rig.screen() == "out_of_service",
               what="out of service")
    assert rig.engine.acceptor_status is AcceptorStatus.FAILURE
    reason = rig.engine.oos_reasons["acceptor"]
    assert "the bill acceptor can take no RUB note" in reason
    assert "купюроприёмник не примет ни одной купюры RUB" in reason  # both languages
    assert WHY[rig.kit.name] in reason
    snap = rig.engine.snapshot()
    assert snap["out_of_service"]["reasons"] == ["acceptor"]
    with pytest.raises(IntentError):
        rig.intent("start")  # no customer reaches a cash screen that takes nothing
    (event,) = [e for e in rig.ledger.recent_events() if e["kind"] == "acceptor_fault"]
    assert event["data"]["status"] == "failure" and WHY[rig.kit.name] in event["data"]["detail"]
    assert rig.model(lambda m: not rig.kit.enabled_values(m))  # M4: the unit stays disabled
    assert rig.engine.screen is Screen.OUT_OF_SERVICE


def test_probe_says_why_the_unit_is_unusable(tmp_path: Path) -> None:
    """`kiosk devices probe`: the same verdict for the technician, before any service."""
    sim = _id003_foreign(tmp_path / "ttyID003", False, lambda _line: None).start()
    try:
        profile = tmp_path / "id003.toml"
        profile.write_text(ID003.profile_text, encoding="utf-8")
        (result,) = probe([sim.path], {"fast": load_profile(profile)}, currency="RUB")
    finally:
        sim.stop()
    assert result.found and result.bill_table == ()
    assert result.detail.startswith("UNUSABLE: no RUB note in its bill table")
    assert "JCM country number 153" in result.detail
    assert "set [id003] currency" in format_table([result])
