"""kiosk-agent core: configuration, ledger, payment engine, receipts, local API, CLI."""

__version__ = "0.1.0"
