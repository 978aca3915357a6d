"""Shared fixtures for the printer tests: receipt data at a fixed moment, and a rig of
pty simulator + real driver per firmware profile."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from drivers.escpos.printer import EscposPrinter
from drivers.profiles import Profile, load_profiles
from drivers.sim.printer import PrinterSimulator, SimConfig
from kiosk import receipts

REPO = Path(__file__).resolve().parents[2]  # for subprocesses (PYTHONPATH, cwd)

# A fixed moment so golden files never change with the clock (UTC+3, Moscow).
FIXED_TZ = timezone(timedelta(hours=3))
FIXED_AT = datetime(2025, 3, 5, 14, 37, 12, tzinfo=FIXED_TZ)
SUPPORT_PHONE = "8 800 000-00-00"
PAYMENT_ID = "10023456-000123"
RECORD_ID = "10023456-U000007"
CHECK_CODE = "048213"  # a leading zero: the receipt must keep it


@pytest.fixture
def term() -> receipts.TerminalInfo:
    return receipts.TerminalInfo(
        terminal_id="10023456",
        address="г. Москва, ул. Примерная, д. 1",
        support_phone=SUPPORT_PHONE,
        agent_name='ООО "Пример Платежи"',
        status_url="https://pay.example.ru/s/{payment_id}",
    )


@pytest.fixture
def payment() -> receipts.PaymentReceiptData:
    return receipts.PaymentReceiptData(
        payment_id=PAYMENT_ID,
        created_at=FIXED_AT,
        provider_name="МТС «Мобильная связь»",
        account="+7 916 ***-**-67",
        inserted_minor=123450,
        commission_minor=2500,
        credited_minor=120950,
        currency="RUB",
        check_code=CHECK_CODE,
    )


@pytest.fixture
def unclaimed() -> receipts.UnclaimedData:
    return receipts.UnclaimedData(
        record_id=RECORD_ID,
        created_at=FIXED_AT,
        amount_minor=50000,
        currency="RUB",
        reason="сеанс прерван — session aborted",
        check_code=CHECK_CODE,
    )


@pytest.fixture
def encashment() -> receipts.EncashmentData:
    return receipts.EncashmentData(
        encashment_id=17,
        created_at=FIXED_AT,
        period_start=datetime(2025, 3, 1, 9, 0, 0, tzinfo=FIXED_TZ),
        technician="Иванов И.",
        counts=((10000, 12), (500000, 3), (5000, 7)),
        total_minor=1655000,
        currency="RUB",
    )


@pytest.fixture(scope="session")
def printer_profiles() -> dict[str, Profile]:
    return {n: p for n, p in load_profiles().items() if p.kind == "printer"}


@pytest.fixture
def rig(printer_profiles, tmp_path):
    """rig(profile_name) -> (simulator, driver) on a fresh pty; both stopped at teardown."""
    started: list[tuple[PrinterSimulator, EscposPrinter]] = []

    def make(name: str, **sim_overrides) -> tuple[PrinterSimulator, EscposPrinter]:
        profile = printer_profiles[name]
        config = SimConfig.from_profile(profile)
        if sim_overrides:
            config = SimConfig(**{**config.__dict__, **sim_overrides})
        sim = PrinterSimulator(config, receipts_dir=tmp_path / f"receipts-{name}").start()
        printer = EscposPrinter(profile, sim.path, frame_log_path=tmp_path / f"{name}.frames")
        printer.start()
        started.append((sim, printer))
        return sim, printer

    yield make
    for sim, printer in started:
        printer.stop()
        sim.stop()
