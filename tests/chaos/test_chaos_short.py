"""The chaos run, short: real CCNET and ESC/POS drivers on pty simulators, the real core
daemon with MQTT to a real mosquitto, SIGKILLs at random instants (most aimed at the gap
between a stacked bill's commit and its ACK), one broker stop/start, validator power
cycles with a note in the stacker path, corrupted replies right after STACK (the unit
retransmitting after the NAK, in the gap or late, or silent), a desk consumer;
then device ↔ ledger ↔ desk reconcile bill by bill. The long run is `make chaos`
(tests/chaos/chaos.py, >= 1,000 payments)."""

from __future__ import annotations

import pytest

from tests.chaos.chaos import NAK_BEHAVIOURS, ChaosParams, run_chaos

PAYMENTS = 70


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_chaos_short_loses_and_duplicates_nothing(tmp_path):
    params = ChaosParams(
        payments=PAYMENTS,
        min_kills=4,
        min_window_kills=2,
        min_uncommitted_kills=1,
        kill_every_s=(1.0, 4.0),
        broker_every_s=(8.0, 15.0),
        broker_down_s=(1.0, 3.0),
        max_broker_restarts=1,
        power_cycle_share=0.05,
        corrupt_share=0.1,
        min_power_cycles=2,
        min_corrupted_each=1,
        budget_s=100.0,
        drain_timeout_s=60.0,
    )
    report = run_chaos(tmp_path / "chaos", params, log=False)
    print("\n" + report.summary())
    recon = report.recon
    assert recon is not None
    assert report.attempted >= PAYMENTS
    assert len(report.kills) >= params.min_kills, "the run must actually kill the core"
    assert report.kills_of("window") >= params.min_window_kills, "kills between commit and ACK"
    assert report.kills_of("uncommitted") >= 1, "a kill between the stacked report and commit"
    assert sum(report.broker_restarts.values()) == 1
    faults = report.validator
    assert faults is not None and faults.power_cycles >= 2, "validator power cycles"
    assert faults.recovery_timeouts == 0, "a power-cycled unit's note was never ACKed"
    assert all(faults.corrupted[n] >= 1 for n in NAK_BEHAVIOURS), faults.corrupted
    # Every repeated stacked report after a kill in the window was recognised, not credited.
    assert report.duplicates_ignored == report.kills_of("window")
    assert report.interrupted_alive == 0, "a payment failed although the core was alive"
    assert recon.problems == []
    assert recon.lost == 0 and recon.duplicated == 0
    assert recon.device_bills == recon.ledger_bills > 0
    assert recon.cassette_ledger == recon.cassette_device
    assert recon.desk_payments == recon.payments + recon.unclaimed
    assert not report.unacked_at_end, "the unit still holds a stacked report"
    assert report.core_exit == 0
    assert report.desk_rejected == 0
