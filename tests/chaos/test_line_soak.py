"""Line-fault soak, short: garbage, noise between frames, dropped replies, lost bytes,
corrupted CRCs (also on the very reply that carries a stacked bill), acceptor
unplug/replug and printer outages during payments through the real core daemon. The
core must not crash, no bill may be credited wrongly or twice, and the terminal must come
back from every fault; the recovery times are printed. The long soak is
`python -m tests.chaos soak --minutes 15` (tests/chaos/soak.py).
"""

from __future__ import annotations

import pytest

from tests.chaos.soak import CLOSING_CUSTOMERS, FAULTS, SoakParams, run_soak

DURATION_S = 45.0


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_line_faults_neither_crash_nor_miscredit(tmp_path):
    params = SoakParams(duration_s=DURATION_S, fault_every_s=(0.3, 1.2), min_faults=40,
                        faults=dict(FAULTS))
    report = run_soak(tmp_path / "soak", params, log=False)
    print("\n" + report.summary())
    recon = report.recon
    assert recon is not None
    assert report.core_alive, "the core crashed"
    assert report.core_exit == 0
    assert report.closing_receipts == CLOSING_CUSTOMERS, "served in full after the faults"
    assert sum(report.injected.values()) >= params.min_faults
    # the faults really hit the line, and of several kinds
    assert sum(report.hits.values()) >= 20
    assert len([k for k, n in report.hits.items() if n]) >= 4
    assert report.completed >= 20
    assert report.wrong_credit == []
    assert recon.problems == []
    assert recon.lost == 0 and recon.duplicated == 0
    assert recon.cassette_ledger == recon.cassette_device
    # every outage ended: the terminal served again after each one
    assert report.unrecovered() == []
    for kind, values in report.resync_s.items():
        assert max(values) < 5.0, f"the driver took {max(values):.1f} s to resync after {kind}"
    for kind in ("unplug", "printer_offline", "printer_replug"):  # each happened and ended
        assert report.recovery(kind), f"no {kind} episode"
        assert max(report.recovery(kind)) < 15.0, report.recovery(kind)
