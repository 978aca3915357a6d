"""Power loss where only fsynced data survives (tests/chaos/power_loss.py): the real core
and the real SQLite under an LD_PRELOAD shim that keeps each ledger file's image as of
its last fsync; cuts at random and aimed instants, half of them also keeping a random
part of the unsynced writes (whole or torn); after each one the durable image must hold
every note the unit got an ACK for (M2) and every payment a customer was told about
(M5); at the end nothing is lost or counted twice and no payment id repeats."""

from __future__ import annotations

import pytest

from tests.chaos.power_loss import PowerParams, run_power_loss


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_power_cuts_lose_no_acked_note_and_repeat_no_payment(tmp_path):
    params = PowerParams()
    report = run_power_loss(tmp_path / "power", params)
    print("\n" + report.summary())
    recon = report.recon
    assert report.problems == []  # checked at every cut: the first finding ends the run
    assert recon is not None
    kinds = report.kinds()
    assert report.attempted >= params.payments
    assert len(report.cuts) >= params.min_cuts, "the run must actually cut the power"
    assert kinds["committed_unacked"] >= 3, "cuts between a durable commit and its ACK"
    assert kinds["uncommitted"] >= 2, "cuts between a stacked report and its commit"
    # the model is live: the shim saw SQLite sync the WAL and checkpoint into the database
    assert report.syncs["-wal"] > 0 and report.syncs["db"] > 0
    assert sum(c.aim == "in-write" for c in report.cuts) >= params.min_self_cuts, (
        "cuts between a ledger write and its sync")
    loose = [c for c in report.cuts if c.model == "loose"]
    assert len(loose) >= 3, "cuts that keep part of the unsynced writes"
    # cuts inside a write alternate loose/strict, the first loose: unsynced writes were met
    assert sum(c.kept + c.dropped for c in loose) > 0
    assert recon.problems == []
    assert recon.lost == 0 and recon.duplicated == 0
    assert recon.device_bills == recon.ledger_bills > 0
    assert recon.cassette_ledger == recon.cassette_device
    assert len(report.told) > 0
    assert not report.unacked_at_end, "the unit still holds a stacked report"
    assert report.core_exit == 0
