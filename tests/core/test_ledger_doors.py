"""The ledger's doors: modules beside kiosk/ledger/store.py use its public API only
(Ledger.transaction / Ledger.read / Ledger.pragma and the LedgerTx handle), so the
ledger's insides can change without reading every caller (docs/ledger.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kiosk.ledger import Ledger, LedgerError, PaymentKind, PaymentStatus, outbox

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("kiosk", "sync", "ui", "bench", "scripts", "tests")
OWNER = REPO / "kiosk" / "ledger" / "store.py"


def _private_ledger_uses(path: Path, root: Path = REPO) -> list[str]:
    """`<…ledger…>._name` attribute uses in one file (the receiver's last part names a
    ledger: `ledger`, `self.ledger`, `term.ledger`, `led_ger`…)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or name.startswith("__"):
            continue
        receiver = ast.unparse(node.value).rsplit(".", 1)[-1]
        if "ledger" in receiver.lower():
            found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_but_the_store_touches_the_ledgers_insides() -> None:
    uses: list[str] = []
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            if path != OWNER and ".venv" not in path.parts:
                uses += _private_ledger_uses(path)
    assert uses == [], "use Ledger.transaction()/read()/pragma() instead:\n" + "\n".join(uses)


def test_the_scan_sees_a_private_use(tmp_path: Path) -> None:
    """The check above can fail: it finds what it looks for."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f(term):\n    with term.ledger._tx() as c:\n        return c._x\n")
    assert _private_ledger_uses(sample, tmp_path) == ["sample.py:2: term.ledger._tx"]


def test_a_transaction_commits_all_or_nothing(tmp_path: Path) -> None:
    """M5/M8 through the public door: a payment row, its history and its outbox message
    commit together; an exception inside the block leaves none of them."""
    ledger = Ledger(tmp_path / "ledger.sqlite", "T7", clock=lambda: 1_700_000_000.0)
    ledger.open()
    try:
        with pytest.raises(RuntimeError), ledger.transaction() as tx:
            made = tx.create_payment(PaymentKind.UNCLAIMED, 10_000, "RUB", "test: rolled back")
            tx.enqueue("payment", made.id, tx.payment_payload(made.id))
            raise RuntimeError("the caller changed its mind")
        assert ledger.list_payments() == []
        assert outbox.pending(ledger) == []

        with ledger.transaction() as tx:
            made = tx.create_payment(
                PaymentKind.PAYMENT, 10_000, "RUB", "test", commission=lambda cash: cash * 2,
                provider_id="mts", account="9161234567",
            )
            seq = tx.enqueue("payment", made.id, tx.payment_payload(made.id))
        assert made.commission_minor == 10_000 and made.credited_minor == 0  # M9: ≤ cash
        got = ledger.get_payment(made.id)
        assert got is not None and got["status"] == PaymentStatus.QUEUED
        assert [h["status"] for h in got["history"]] == ["confirmed", "queued"]
        assert [(m.id, m.ref) for m in outbox.pending(ledger)] == [(seq, made.id)]
    finally:
        ledger.close()


def test_pragma_allows_only_settings_that_keep_commits_durable(tmp_path: Path) -> None:
    """M2: nobody outside the store can turn off synchronous=FULL or the WAL."""
    ledger = Ledger(tmp_path / "ledger.sqlite", "T7")
    ledger.open()
    try:
        ledger.pragma("cache_size", -256)
        assert ledger.pragma("cache_size") == -256
        for name, value in (("synchronous", "OFF"), ("journal_mode", "DELETE")):
            with pytest.raises(ValueError, match=name):
                ledger.pragma(name, value)
        with pytest.raises(ValueError, match="not a PRAGMA value"):
            ledger.pragma("cache_size", "1; DROP TABLE payments")
        ledger.pragma("query_only", "ON")
        with pytest.raises(LedgerError, match="readonly"):
            ledger.add_event("test", "info", {})
        ledger.pragma("query_only", "OFF")
        assert ledger.add_event("test", "info", {}) > 0
    finally:
        ledger.close()
