"""Disk full and read-only ledger during a session (M10), end to end: the real daemon
with the disk fault hook (tests/chaos/faultcore.py), the real CCNET and ESC/POS drivers,
MQTT to mosquitto with a desk consumer, and the real customer screen (`python -m ui
--report` on Xvfb). See tests/chaos/disk.py for the three scenarios.
"""

from __future__ import annotations

import pytest

from tests.chaos.disk import RECOVERY_TIMEOUT_S, run_disk
from tests.chaos.rig import SUPPORT_PHONE


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_disk_full_and_read_only_ledger_end_to_end(tmp_path):
    report = run_disk(tmp_path / "disk", with_ui=True)
    print("\n" + report.summary())
    by = {s.name: s for s in report.scenarios}
    assert set(by) == {"full", "stack", "idle"}
    assert report.problems == []
    for s in report.scenarios:
        # what the customer sees: out of service, the support phone, on the UI itself
        assert s.shown is not None and SUPPORT_PHONE in s.shown.text, s.name
        assert s.ui_phone == SUPPORT_PHONE, s.name
        assert s.ui_text is not None and SUPPORT_PHONE in s.ui_text, s.name
        assert s.unit_closed, f"{s.name}: the unit kept taking bills"
        assert s.refused_while_out, f"{s.name}: a bill went in while out of service"
        assert s.recovered_s is not None and s.recovered_s < RECOVERY_TIMEOUT_S, s.name
        assert s.payment_bills == s.unit_bills, s.name
    for s in report.scenarios:  # the desk's monitoring sees it too
        assert s.desk_saw, f"{s.name}: the desk's health never said out of service"
    # The held bill's repeat is the first write that works: back at once, not at the
    # next 10-s probe (test_findings.py pins the engine's part of this).
    assert by["stack"].recovered_s < 2.0
    assert by["full"].recovered_s < 2.0
    assert by["full"].outcome in ("returned", "held")
    assert by["full"].bills_before >= 2  # the disk filled up during the session
    assert by["full"].payment_bills and by["stack"].payment_bills == [100_000]
    assert by["stack"].outcome == "held"  # stacked, not committed, so not acknowledged
    assert by["idle"].outcome.startswith("refused")
    recon = report.recon
    assert recon is not None and recon.problems == []
    assert recon.lost == 0 and recon.duplicated == 0
    assert recon.desk_payments == recon.payments + recon.unclaimed == 2
