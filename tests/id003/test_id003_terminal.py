"""ID-003 stories of a whole terminal (issue 12): the real engine and SQLite ledger, the
real Id003Acceptor built by its production factory, the simulator on a real pty
(tests/acceptors/rig.py). What the ledger holds is asserted, not what the driver said."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kiosk.ledger.store import UNKNOWN_BILL_REASON
from tests.acceptor_terminal import started_rigs
from tests.acceptors.rig import ID003, RUB, Rig, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    yield from started_rigs(lambda **kwargs: Rig(tmp_path, ID003, **kwargs))


def test_unnamed_note_after_power_up_is_an_unclaimed_credit_of_unknown_value(make_rig):
    """Defect 3: a 500 is paid; later the unit powers up with a note in its stacker that
    nobody sent STACK for, and power recovery reports it VEND VALID without an escrow code.
    Before the fix the driver named it after the last credited bill with that bill's event
    key: the ledger took it for a repeat and the note was recorded nowhere. Now the ledger
    holds an unclaimed credit of unknown value, counted in the cassette, with an event for
    the technician."""
    rig = make_rig()
    rig.to_cash()
    rig.insert_credited(500)
    pid = rig.pay()
    rig.intent("done")
    rig.wait_disabled()
    mark = rig.sim.mark()
    assert rig.sim.command("power_cycle stacker") == "ok"
    rig.sim.wait_for("vend valid 10 RUB (power recovery)", since=mark)
    rig.sim.wait_for("host acked 0x15", since=mark)
    wait_until(lambda: len(rig.payments()) == 2, what="the note recorded")
    (paid, unknown) = rig.payments()
    assert paid == (pid, "payment", 500 * RUB, "queued", None)
    assert unknown[1:] == ("unclaimed", 0, "unclaimed", UNKNOWN_BILL_REASON)
    bills = rig.rows("SELECT amount_minor, bill_type, recovered, payment_id FROM stacked_bills "
                     "ORDER BY id")
    assert [b[:3] for b in bills] == [(500 * RUB, 0x64, 0), (0, -1, 1)]
    assert bills[1][3] == unknown[0]
    assert rig.cassette() == {500 * RUB: 1, 0: 1}  # one bill more, its value to be counted
    assert rig.unit_cassette() == {500 * RUB: 1, 10 * RUB: 1}
    (event,) = [e for e in rig.ledger.recent_events() if e["kind"] == "unknown_bill_stacked"]
    assert event["severity"] == "error" and event["data"]["origin"] == "power_up"
    assert "duplicate_stacked_ignored" not in rig.event_kinds()
    assert rig.screen() == "idle"
