"""kiosk-agent core: configuration, ledger, payment engine, receipts, local API.

The command line and the daemon's assembly live in agent/ (the composition root)."""

__version__ = "0.1.0"
