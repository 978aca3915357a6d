"""The outbox drain's resend timing (sync/drain.py): a record's wait doubles with each
resend on one connection, capped at RESEND_BACKOFF_MAX × resend_after_s; an ack ends
it, a reconnect starts it over, a refused publish is retried at once. Real ledger file,
a settable clock (the one true edge here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kiosk.ledger import Ledger
from sync.drain import REFUSED_RETRY_S, RESEND_BACKOFF_MAX, Drain
from sync.ed25519 import PrivateKey
from tests.sync.terminal import make_payments

PERIOD = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger.sqlite", "T0001")
    led.open()
    make_payments(led, 3)
    yield led
    led.close()


def _drain(ledger: Ledger, clock: Clock) -> Drain:
    return Drain(ledger, "T0001", PrivateKey.generate(), "T0001.00000000", inflight=10,
                 batch=10, resend_after_s=PERIOD, clock=clock)


def _seqs(drain: Drain) -> list[int]:
    return sorted(s for b in drain.next_batches() for s in b.seqs)


def test_each_resend_waits_twice_as_long_up_to_the_cap(ledger: Ledger) -> None:
    clock = Clock()
    drain = _drain(ledger, clock)
    first = _seqs(drain)
    assert len(first) == 3
    waits = []
    for _ in range(5):
        wait = drain.next_resend_in()
        assert wait is not None
        waits.append(wait)
        clock.now += wait - 0.01
        assert _seqs(drain) == [], "resent before its time"
        clock.now += 0.01
        assert _seqs(drain) == first
    assert waits == [PERIOD * min(RESEND_BACKOFF_MAX, 2 ** i) for i in range(5)]
    assert waits[-1] == PERIOD * RESEND_BACKOFF_MAX


def test_an_ack_ends_the_resends_and_a_reconnect_starts_the_wait_over(ledger: Ledger) -> None:
    clock = Clock()
    drain = _drain(ledger, clock)
    seqs = _seqs(drain)
    clock.now += PERIOD
    assert _seqs(drain) == seqs  # the second send: the next wait is 2 periods
    assert drain.next_resend_in() == 2 * PERIOD
    assert drain.acknowledged(seqs[:1]) == 1
    assert sorted(drain.in_flight) == seqs[1:]

    drain.reset("conn-2")  # a new connection: everything unacknowledged goes out at once
    assert _seqs(drain) == seqs[1:]
    assert drain.next_resend_in() == PERIOD  # and waits one period again


def test_a_refused_publish_is_retried_soon_whatever_the_backoff(ledger: Ledger) -> None:
    clock = Clock()
    drain = _drain(ledger, clock)
    batches = drain.next_batches()
    for _ in range(3):  # three resends: the wait is at its cap now
        clock.now += drain.next_resend_in() or 0.0
        batches = drain.next_batches()
    assert drain.next_resend_in() == PERIOD * RESEND_BACKOFF_MAX
    drain.published(batches[0].seqs, ok=False)
    assert drain.next_resend_in() == pytest.approx(REFUSED_RETRY_S)
