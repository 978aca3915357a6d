"""Build the acceptor and printer the configuration names. The only place that knows
which driver class goes with which `kind`."""

from __future__ import annotations

from drivers.acceptor import BillAcceptor
from drivers.printer import ReceiptPrinter
from kiosk.config import Config


class DeviceConfigError(ValueError):
    pass


def build_acceptor(config: Config) -> BillAcceptor:
    ac = config.acceptor
    if ac.kind == "virtual":
        from drivers.virtual_acceptor import VirtualAcceptor

        data = config.paths.data_dir
        return VirtualAcceptor(
            journal=ac.journal or data / "virtual-acceptor.journal",
            inbox=ac.inbox or data / "virtual-acceptor.inbox",
            ack_delay_s=ac.ack_delay_ms / 1000,
        )
    if ac.kind == "ccnet":
        from drivers.ccnet.factory import build_ccnet_acceptor

        return build_ccnet_acceptor(
            ac.port, ac.profile, config.paths.log_dir, state_dir=config.paths.data_dir,
            currency=config.terminal.currency,
        )
    if ac.kind == "id003":
        from drivers.id003.factory import build_id003_acceptor

        return build_id003_acceptor(
            ac.port, ac.profile, config.paths.log_dir, state_dir=config.paths.data_dir,
            currency=config.terminal.currency,
        )
    raise DeviceConfigError(f"acceptor kind {ac.kind!r} is not supported")


def build_printer(config: Config) -> ReceiptPrinter:
    pc = config.printer
    if pc.kind == "virtual":
        from drivers.virtual_printer import VirtualPrinter

        return VirtualPrinter(pc.receipts_dir or config.paths.data_dir / "receipts")
    if pc.kind == "escpos":
        from drivers.escpos.factory import build_escpos_printer

        return build_escpos_printer(pc.port, pc.profile, config.paths.log_dir)
    raise DeviceConfigError(f"printer kind {pc.kind!r} is not supported")
