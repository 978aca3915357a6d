"""Service state: out-of-service reasons, the ledger's health (M10), the disk guard.

The terminal takes no cash while any reason is set (kiosk.engine.cash reads
`oos_reasons`); a session that already holds cash is finished, never dropped. Invariant
M10 (docs/invariants.md): a ledger that cannot write, or that is not this terminal's, puts
the terminal out of service and disables the acceptor, so every further bill is returned;
a probe every LEDGER_PROBE_S brings it back when a write works again. Tests:
tests/core/test_engine_money.py (test_m10_*), tests/sync/test_blocked_ledger.py.
"""

from __future__ import annotations

from kiosk.diskguard import DiskLevel, disk_level
from kiosk.engine.core import EngineCore, log
from kiosk.ledger import LedgerError, LedgerIdentityError
from kiosk.screens import Screen

LEDGER_PROBE_S = 10.0
LEDGER_FILE_CHECK_S = 1.0  # is the ledger file still the one we write? (one stat)
DISK_CHECK_S = 60.0

__all__ = ["DISK_CHECK_S", "LEDGER_FILE_CHECK_S", "LEDGER_PROBE_S", "ServiceState"]


class ServiceState(EngineCore):
    """Out-of-service bookkeeping and the periodic probes; a mixin of PaymentEngine (see
    kiosk.engine.core). Called with the engine lock held."""

    def _run_probes(self, now: float) -> None:
        """The tick's health checks once the start-up reconciliation is done."""
        if (
            "ledger" not in self._oos_reasons
            and now - self._ledger_file_checked >= LEDGER_FILE_CHECK_S
        ):
            self._ledger_file_checked = now
            try:
                self.ledger.check_file()  # deleted or replaced under us (M10)
            except LedgerError as exc:
                self._ledger_failed(exc)
        if "ledger" in self._oos_reasons and now - self._ledger_probed >= LEDGER_PROBE_S:
            self._ledger_probed = now
            self._probe_ledger()
        if now - self._disk_checked >= DISK_CHECK_S:
            self._disk_checked = now
            self._check_disk()

    # -- out of service (M10 and device faults) ----------------------------------------
    def _set_oos(self, code: str, detail: str) -> None:
        first = not self._oos_reasons
        self._oos_reasons[code] = detail
        log.warning("out of service: %s", detail)
        s = self._session
        if s is not None and s.session_id is not None and (s.inserted_minor or self._pending):
            self._request_finish(f"out of service: {detail}")
        elif self._screen is not Screen.RECEIPT and (
            first or self._screen is not Screen.OUT_OF_SERVICE
        ):
            if s is not None and s.session_id is not None and s.payment_id is None:
                try:  # a cash session that took nothing: close its ledger row now
                    self.ledger.abandon_session(s.session_id)
                except LedgerError as exc:
                    log.warning("session %s left for reconciliation: %s", s.session_id, exc)
            self._session = None
            self._set_screen(Screen.OUT_OF_SERVICE if self._reconciled else Screen.STARTING)
        self._apply_acceptor()

    def _clear_oos(self, code: str) -> None:
        cleared = self._oos_reasons.pop(code, None) is not None
        if cleared and not self._oos_reasons and self._screen is Screen.OUT_OF_SERVICE:
            self._set_screen(Screen.IDLE)

    def _ledger_failed(self, exc: Exception) -> None:
        log.error("ledger failure: %s", exc)
        identity = isinstance(exc, LedgerIdentityError)
        detail = f"ledger: {exc}" if identity else f"ledger cannot write: {exc}"
        self._oos_reasons["ledger"] = detail
        self._note_device_error("ledger", "ledger_failed", str(exc)[:200])
        self._acceptor_enabled = frozenset()
        self.acceptor.disable()
        self._screen = Screen.OUT_OF_SERVICE
        self._deadline = float("inf")
        self._publish()

    def _probe_ledger(self) -> None:
        """After a write failure (M10): try one small write; if the disk is back, finish
        the interrupted session (its cash is on disk) and return to service."""
        try:
            self.ledger.add_event("ledger_recovered", "info", {})
        except LedgerError:
            return
        log.warning("ledger writable again")
        del self._oos_reasons["ledger"]
        s = self._session
        if s is not None and s.session_id is not None and s.payment_id is None:
            if s.inserted_minor or self._pending is not None:
                s.finishing = False
                self._request_finish("finished after a ledger failure")
                return
            self._abandon()
            return
        self._go_idle()

    def ledger_reinitialised(self) -> None:
        """A technician started a new ledger (kiosk.service.ledger_init): try it now and
        return to service if it writes."""
        with self._lock:
            self._ledger_probed = self._clock()
            if "ledger" in self._oos_reasons:
                self._probe_ledger()
            self._publish()

    def _check_disk(self) -> None:
        try:
            level, free = disk_level(self.config.paths.data_dir)
        except OSError as exc:
            log.warning("disk check failed: %s", exc)
            return
        if level is self._disk:
            return
        self._disk = level
        self._add_event(
            "disk_" + level.value,
            "info" if level is DiskLevel.OK else "warning",
            {"free_bytes": free, "path": str(self.config.paths.data_dir)},
        )
        if level is DiskLevel.CRITICAL:
            self._set_oos("disk", f"disk almost full: {free // (1024 * 1024)} MiB free")
        else:
            self._clear_oos("disk")
        self._publish()

