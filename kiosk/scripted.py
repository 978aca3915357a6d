"""A scripted customer: one whole payment through the local API, as a person would do it.

Used by `kiosk pay`, the demo and the tests. Bills are put into the acceptor by `feed`
(the virtual acceptor's inbox, or a simulator's control channel), never by the API:
the API cannot create money.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.api_client import ApiClient


def inbox_feeder(path: Path) -> Callable[[int], None]:
    """Feed bills to a virtual acceptor (or any `insert N` line channel) by appending."""

    def feed(rubles: int) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"insert {rubles}\n")

    return feed


class PaymentNotMade(RuntimeError):
    """The session ended without a payment (e.g. the terminal went out of service before
    any cash went in)."""


def run_payment(
    client: ApiClient,
    provider_id: str,
    account: str,
    bills: list[int],
    feed: Callable[[int], None],
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Pay `bills` (major units) to the account; returns the finished payment summary."""
    client.wait_for(lambda s: s["screen"] == "idle", timeout)
    previous = ((client.snapshot or {}).get("last_payment") or {}).get("payment_id")
    client.intent("select_provider", provider_id=provider_id)
    client.intent("submit_account", account=account)
    if client.snapshot and client.snapshot.get("printer_warning"):
        client.intent("accept_no_receipt")
    client.intent("confirm_account")
    client.wait_for(lambda s: s["screen"] == "cash", timeout)
    expected = 0
    for rubles in bills:
        # Like a customer waiting for the slot's light: insert only once it takes bills.
        client.wait_for(
            lambda s: s["screen"] != "cash" or s["acceptor"]["status"] == "idle", timeout
        )
        if client.snapshot is None or client.snapshot["screen"] != "cash":
            break
        before = client.snapshot["session"]["inserted_minor"]
        feed(rubles)
        expected = before + rubles * 100

        def counted(s: dict[str, Any], e: int = expected) -> bool:
            return bool(
                s["screen"] != "cash"
                or (s["session"] or {}).get("inserted_minor", 0) >= e
                or (s["notice"] or {}).get("code")
                in ("bill_rejected", "bill_returned", "bill_over_max")
            )

        snap = client.wait_for(counted, timeout)
        if snap["screen"] != "cash":
            break
    if client.snapshot and client.snapshot["screen"] == "cash":
        client.intent("pay")

    def settled(s: dict[str, Any]) -> bool:
        last = s["last_payment"] or {}
        if s["screen"] == "receipt":
            return last.get("receipt") not in (None, "printing")
        # back at idle or out of service: done, with a new payment or without one
        new = last.get("payment_id") not in (None, previous)
        return s["screen"] in ("out_of_service", "idle") and (
            not new or last.get("receipt") not in (None, "printing")
        )

    snap = client.wait_for(settled, timeout)
    result = dict(snap["last_payment"] or {})
    if result.get("payment_id") in (None, previous):  # someone else's, or none at all
        oos = (snap.get("out_of_service") or {}).get("en", "")
        raise PaymentNotMade(f"no payment was made (screen {snap['screen']}) {oos}".strip())
    if snap["screen"] == "receipt":
        client.intent("done")
    return result
