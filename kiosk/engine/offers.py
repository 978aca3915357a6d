"""Offers after a committed payment and the funnel's counts; a mixin of PaymentEngine.

Money first: offers are chosen only in `_finish`, after `Ledger.finish_session` has
committed the payment and queued its outbox row (M5); choosing is pure and bounded
(kiosk/offers.py) and reads nothing from the ledger, so the receipt job is submitted at
once with the top offer as one more, ready-made line. The `offer_impression` event is
written by a job queued *behind* the receipt on the printer thread, so its fsync never
comes before the paper. Events take the ordinary event path (`_add_event`): they get
outbox seqs after the payment's and never touch credit, the payment rows or their order
(M1, M8). The funnel counts screens in memory (kiosk/funnel.py) and reports a day once,
as a `funnel_report` event, when the local date changes. Docs: docs/offers.md.
"""

from __future__ import annotations

from typing import Any

from kiosk.engagement import OfferPick
from kiosk.engine.core import CashSession, EngineCore, IntentError, log
from kiosk.offers import OfferRules
from kiosk.screens import Screen


class OffersAndFunnel(EngineCore):
    """Offer choice, impressions and taps, the funnel's daily report."""

    def set_offer_rules(self, rules: OfferRules, version: int | None) -> None:
        """A validated `offers` section of the desk's config (sync/desk_config.py)."""
        with self._lock:
            self._engagement.set_rules(rules, version)

    def _pick_offers(self, s: CashSession, inserted_minor: int) -> OfferPick | None:
        """Called by `_finish` after the commit (lock held): choose, and put the choice
        on the final screen's snapshot (`last_payment.offers`)."""
        try:
            pick = self._engagement.pick(s.provider.id, s.provider.category, s.account,
                                         inserted_minor)
        except Exception:  # offers must never cost a receipt
            log.exception("offers not chosen for this payment")
            self._offer_pick = None
            return None
        self._offer_pick = pick
        if pick is not None and self._last_payment is not None:
            self._last_payment["offers"] = [o.public() for o in pick.choice.offers]
            self._last_payment["offers_interested"] = []
        return pick

    def _offers_shown(self, pick: OfferPick | None) -> None:
        """Queue the impression record behind the receipt on the printer thread."""
        if pick is not None:
            self.printer_worker.submit(self._record_impression, pick)

    def _record_impression(self, pick: OfferPick) -> None:
        with self._lock:
            self._add_event("offer_impression", "info", {
                "holdout": pick.choice.holdout,
                "offers": [o.id for o in pick.choice.offers],
                "context": pick.context,
            })

    def _offer_interested(self, args: dict[str, Any]) -> None:
        """The customer tapped "interested" on an offer of the final screen."""
        if self._screen is not Screen.RECEIPT:
            raise IntentError("wrong_screen", f"not possible on the {self._screen.value} screen")
        lp, pick = self._last_payment, self._offer_pick
        offer_id = args.get("offer_id")
        shown = [o.id for o in pick.choice.offers] if pick is not None else []
        if lp is None or pick is None or offer_id not in shown:
            raise IntentError("unknown_offer", f"no offer {str(offer_id)[:64]!r} on this screen")
        tapped = list(lp.get("offers_interested") or [])
        if offer_id in tapped:
            return  # one tap per offer and session is counted
        lp["offers_interested"] = [*tapped, offer_id]
        self._add_event("offer_interested", "info",
                        {"offer_id": offer_id, "rank": shown.index(offer_id) + 1,
                         "context": pick.context})

    # -- the funnel --------------------------------------------------------------------
    def _funnel_tick(self) -> None:
        """From tick (lock held): the finished day's counts, once, to the desk."""
        done = self._engagement.due_report()
        if done is not None:
            self._add_event("funnel_report", "info", done)
            self._engagement.save()

    def report_funnel(self) -> dict[str, Any]:
        """Today's counts so far, recorded as a `funnel_report` event now (on demand)."""
        with self._lock:
            report = self._engagement.report_now()
            self._add_event("funnel_report", "info", report)
            return report
