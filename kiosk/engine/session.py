"""The customer session: screen timeouts and the intents of the local API.

`idle → provider → account → confirm → cash → receipt → idle` (kiosk.screens). An intent
is refused with a stable IntentError code when the screen does not allow it. Money rules
these rely on (docs/invariants.md): a session opens its ledger row only when the account
is confirmed and the terminal is in service; a session with cash is never cancelled or
dropped on a timeout, it is finished as a payment (M5, via kiosk.engine.cash). Tests:
tests/core/test_engine_flow.py, tests/core/test_engine_money.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from kiosk.engine.core import CashSession, EngineCore, IntentError
from kiosk.ledger import LedgerError
from kiosk.messages import plain_money
from kiosk.screens import CANCELLABLE, PROMPTLESS, Screen


class SessionIntents(EngineCore):
    """The session state machine; a mixin of PaymentEngine (see kiosk.engine.core)."""

    def _on_deadline(self, now: float) -> None:
        screen = self._screen
        if screen in PROMPTLESS or (
            self._prompt_deadline is not None and now >= self._prompt_deadline
        ):
            self._prompt_deadline = None
            if screen is Screen.CASH and self._session is not None:
                if self._session.inserted_minor > 0 or self._pending is not None:
                    self._request_finish("customer timed out with cash inserted")
                else:
                    self._abandon()
            else:
                self._go_idle()
        elif self._prompt_deadline is None:
            self._prompt_deadline = now + self.config.timeouts.prompt
            self._deadline = self._prompt_deadline
            self._publish()


    # -- customer intents (from the local API) -----------------------------------------
    def intent(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Apply one customer intent; raises IntentError with a stable code when refused."""
        handler = self._INTENTS.get(name)
        if handler is None:
            raise IntentError("unknown_intent", f"unknown intent {name!r}")
        with self._lock:
            self._clear_notice()
            if self._prompt_deadline is not None and name != "continue":
                self._prompt_deadline = None
            result = handler(self, args) or {}
            self._touch()
            self._publish()
            return result

    def _need(self, *screens: Screen) -> None:
        if self._screen not in screens:
            raise IntentError("wrong_screen", f"not possible on the {self._screen.value} screen")

    def _i_start(self, args: dict[str, Any]) -> None:
        self._need(Screen.IDLE)
        self._set_screen(Screen.PROVIDER)

    def _i_select_provider(self, args: dict[str, Any]) -> None:
        self._need(Screen.IDLE, Screen.PROVIDER)
        provider = self.config.catalog.get(str(args.get("provider_id", "")))
        if provider is None:
            raise IntentError("unknown_provider", f"no provider {args.get('provider_id')!r}")
        self._session = CashSession(provider)
        self._set_screen(Screen.ACCOUNT)
        # A fresh printer status before any cash goes in (the confirm screen warns).
        self._poll_printer_soon()

    def _i_set_account(self, args: dict[str, Any]) -> None:
        self._need(Screen.ACCOUNT)
        assert self._session is not None
        account = args.get("account", "")
        limit = self._session.provider.account_length
        if not isinstance(account, str) or (
            account and not (account.isascii() and account.isdigit())
        ):  # "９" and "٣" are digits to str.isdigit(), never to a provider
            raise IntentError("bad_account", "the account is digits 0-9 only")
        if len(account) > limit:
            raise IntentError("bad_account", f"the account has at most {limit} digits")
        self._session.account = account

    def _i_submit_account(self, args: dict[str, Any]) -> None:
        if "account" in args:
            self._i_set_account(args)
        self._need(Screen.ACCOUNT)
        assert self._session is not None
        if not self._session.provider.validate_account(self._session.account):
            raise IntentError("invalid_account", "this number is not valid for the provider")
        self._set_screen(Screen.CONFIRM)

    def _i_back(self, args: dict[str, Any]) -> None:
        self._need(Screen.ACCOUNT, Screen.CONFIRM, Screen.PROVIDER)
        if self._screen is Screen.CONFIRM:
            self._set_screen(Screen.ACCOUNT)
        elif self._screen is Screen.ACCOUNT:
            self._session = None
            self._set_screen(Screen.PROVIDER)
        else:
            self._go_idle()

    def _i_accept_no_receipt(self, args: dict[str, Any]) -> None:
        self._no_receipt_accepted = True

    def _i_confirm_account(self, args: dict[str, Any]) -> None:
        self._need(Screen.CONFIRM)
        s = self._session
        assert s is not None
        if self._oos_reasons:
            raise IntentError("out_of_service", "the terminal is out of service")
        if not self._printer_status.can_print and not self._no_receipt_accepted:
            raise IntentError("printer_warning", "no receipt can be printed: accept first")
        try:
            s.session_id = self.ledger.open_session(s.provider.id, s.account, s.provider.currency)
        except LedgerError as exc:
            self._ledger_failed(exc)
            raise IntentError("out_of_service", "the terminal is out of service") from exc
        self._set_screen(Screen.CASH)

    def _i_pay(self, args: dict[str, Any]) -> None:
        self._need(Screen.CASH)
        s = self._session
        assert s is not None
        if s.inserted_minor == 0:
            raise IntentError("no_cash", "insert a bill first")
        if s.inserted_minor < s.provider.min_minor:
            raise IntentError(
                "below_minimum",
                f"insert at least {plain_money(s.provider.min_minor, s.provider.currency)}",
            )
        if s.provider.credited(s.inserted_minor) <= 0:
            # A catalog that passed validation never gets here; a bad one must not turn
            # the customer's cash into a fee with nothing credited. The session keeps
            # collecting: the customer may add bills (their cash stays in it, M1/M5).
            raise IntentError(
                "no_credit",
                f"the fee would take all {plain_money(s.inserted_minor, s.provider.currency)}:"
                " insert more",
            )
        self._request_finish(None)

    def _i_cancel(self, args: dict[str, Any]) -> None:
        if self._screen in CANCELLABLE:
            self._go_idle()
            return
        self._need(Screen.CASH)
        s = self._session
        assert s is not None
        if s.inserted_minor > 0 or self._pending is not None or s.finishing:
            raise IntentError("has_cash", "money is inside: the payment cannot be cancelled")
        self._abandon()

    def _i_continue(self, args: dict[str, Any]) -> None:
        self._prompt_deadline = None

    def _i_done(self, args: dict[str, Any]) -> None:
        self._need(Screen.RECEIPT)
        self._go_idle()

    _INTENTS: ClassVar[dict[str, Callable[[SessionIntents, dict[str, Any]], Any]]] = {
        "start": _i_start,
        "select_provider": _i_select_provider,
        "set_account": _i_set_account,
        "submit_account": _i_submit_account,
        "back": _i_back,
        "accept_no_receipt": _i_accept_no_receipt,
        "confirm_account": _i_confirm_account,
        "pay": _i_pay,
        "cancel": _i_cancel,
        "continue": _i_continue,
        "done": _i_done,
        "offer_interested": lambda self, args: self._offer_interested(args),
    }

    def payment_status(self, payment_id: str) -> dict[str, Any]:
        """What a customer may see of a payment ("check my payment"): no account digits."""
        p = self.ledger.get_payment(payment_id.strip().upper())
        if p is None:
            raise IntentError("not_found", "no payment with this number on this terminal")
        provider = self.config.catalog.get(p["provider_id"] or "")
        account = p["account"] or ""
        return {
            "payment_id": p["id"],
            "kind": p["kind"],
            "status": p["status"],
            # the desk's word on a processed/failed payment (e.g. why it failed)
            "status_detail": p["status_detail"],
            "provider": {"name_ru": provider.name_ru, "name_en": provider.name_en}
            if provider
            else None,
            "account_tail": account[-4:],
            "inserted_minor": p["inserted_minor"],
            "credited_minor": p["credited_minor"],
            "currency": p["currency"],
            "created_ms": p["created_ms"],
            "updated_ms": p["updated_ms"],
        }

