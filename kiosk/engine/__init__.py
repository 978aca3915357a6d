"""The payment engine (kiosk.engine.payment_engine) and its concerns, one module each.

`from kiosk.engine import PaymentEngine` is the way in; the names below are the ones other
modules and tests use. Layout: core (state, lock, shared helpers), cash (M1-M6), session
(intents, timeouts), service_state (M10, disk), printing (M5) with printer_worker (the
printer thread, an injectable seam), snapshot (the outside views).
"""

from kiosk.engine.cash import CashCollection
from kiosk.engine.core import CashSession, IntentError, PendingEscrow, SeenBill
from kiosk.engine.payment_engine import SETTLE_STATUSES, STARTUP_SETTLE_S, PaymentEngine
from kiosk.engine.printer_worker import PrinterWorker
from kiosk.engine.printing import PRINT_WAIT_S, PRINTER_POLL_S
from kiosk.engine.service_state import DISK_CHECK_S, LEDGER_FILE_CHECK_S, LEDGER_PROBE_S
from kiosk.engine.snapshot import BETWEEN_CUSTOMERS, EngineStatus

__all__ = [
    "BETWEEN_CUSTOMERS",
    "DISK_CHECK_S",
    "LEDGER_FILE_CHECK_S",
    "LEDGER_PROBE_S",
    "PRINTER_POLL_S",
    "PRINT_WAIT_S",
    "SETTLE_STATUSES",
    "STARTUP_SETTLE_S",
    "CashCollection",
    "CashSession",
    "EngineStatus",
    "IntentError",
    "PaymentEngine",
    "PendingEscrow",
    "PrinterWorker",
    "SeenBill",
]
