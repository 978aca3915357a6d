""""Check my payment" by touch against a real core: the number AND the check code from
the receipt, a copy of the receipt, a wrong code that reveals nothing, and the core's
pause after too many wrong codes (docs/ui.md, docs/local-api.md)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from kiosk.api_client import ApiClient
from kiosk.check_code import CheckLimits

ACCOUNT = "9161234567"


def _pay_while_the_screen_runs(d: Any, term: Any) -> dict[str, Any]:
    """A customer pays (intents on the socket, a bill into the acceptor) while the Kivy
    loop keeps drawing: the UI follows the core's snapshots to the receipt screen."""
    paid: dict[str, Any] = {}

    def pay() -> None:
        with ApiClient(term.core.socket) as c:
            c.connect()
            c.intent("select_provider", provider_id="mts")
            c.intent("submit_account", account=ACCOUNT)
            c.intent("confirm_account")
            term.insert(500)
            c.wait_for(lambda s: (s.get("session") or {}).get("inserted_minor") == 50_000, 30)
            c.intent("pay")
            snap = c.wait_for(lambda s: s["screen"] == "receipt" and (
                s["last_payment"] or {}).get("receipt") == "printed", 30)
            paid.update(snap["last_payment"])

    worker = threading.Thread(target=pay, daemon=True)
    worker.start()
    d.until(lambda: not worker.is_alive(), timeout=60, what="the payment")
    assert paid, "the payment was not made"
    return paid


@pytest.mark.slow  # about a minute on a loaded 2-core machine: not in make test-fast
def test_check_with_the_code_copy_wrong_code_and_the_pause(terminal_factory, make_ui):
    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    paid = _pay_while_the_screen_runs(d, term)
    pid = paid["payment_id"]

    # the receipt screen shows the code; the printed receipt carries the same one
    d.on("receipt")
    shown = d.wait_text("receipt.check_code", lambda t: bool(re.search(r"\d{6}", t)))
    code = re.search(r"\d{6}", shown).group(0)  # type: ignore[union-attr]
    assert term.printer.wait_for_receipts(1, timeout=10)
    paper = term.printer.receipts[-1]
    assert pid in paper and re.search(rf"Код проверки / Check code\s+{code}", paper)
    d.both_languages("01-receipt-with-code")
    d.tap("receipt.done")
    d.on("idle")

    d.tap("idle.check")
    d.on("check")
    assert d.find("check.go").disabled  # neither number nor code yet
    assert not d.visible("check.reprint")
    d.both_languages("02-check-empty")

    # the number alone is not enough; with the code the payment shows
    d.type_keys("check.key", pid.rsplit("-", 1)[1].lstrip("0"))
    assert d.find("check.go").disabled
    d.tap("check.code")
    d.type_keys("check.key", code)
    assert d.text("check.code") == code
    d.tap("check.go")
    d.wait_text("check.status", lambda t: t.startswith(pid))
    assert "…4567" in d.text("check.details") and "485,00" in d.text("check.details")
    d.both_languages("03-check-found")

    # a copy of the receipt, marked as one
    d.tap("check.reprint")
    d.wait_text("check.copy_note", lambda t: t.startswith("Копия чека напечатана"), timeout=20)
    assert term.printer.wait_for_receipts(2, timeout=10)
    copy = term.printer.receipts[-1]
    assert "КОПИЯ / COPY" in copy and pid in copy and code in copy
    d.both_languages("04-copy-printed")

    # a wrong code: the same answer as a number that does not exist
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    d.type_check_pair(pid.rsplit("-", 1)[1], wrong)
    d.tap("check.go")
    no_match = d.wait_text("check.status", lambda t: "не найден" in t)
    assert pid not in no_match and "485" not in no_match
    assert not d.visible("check.reprint") and not d.visible("check.details")
    d.both_languages("05-check-no-match")
    d.type_check_pair("77", code)
    d.tap("check.go")
    assert d.wait_text("check.status", lambda t: "не найден" in t) == no_match

    # the pause: the core counts the failures, the screen explains
    for _ in range(CheckLimits().max_failures - 2):
        d.type_check_pair(pid.rsplit("-", 1)[1], wrong)
        d.tap("check.go")
        d.wait_text("check.status", lambda t: "не найден" in t or "Слишком много" in t)
    d.wait_text("check.status", lambda t: t.startswith("Слишком много неверных попыток"))
    d.both_languages("06-check-locked")
    # even the right pair, on a screen opened afresh: the limit is the core's
    d.tap("check.back")
    d.on("idle")
    d.tap("idle.check")
    d.on("check")
    d.type_check_pair(pid.rsplit("-", 1)[1], code)
    d.tap("check.go")
    d.wait_text("check.status", lambda t: t.startswith("Слишком много неверных попыток"))
    events = term.rows("SELECT kind FROM events WHERE kind = 'payment_check_locked'")
    assert events == [("payment_check_locked",)]
