"""Device drivers: serial transport, bill acceptors, receipt printers, simulators.

Nothing here imports kiosk/, sync/ or ui/ (docs/architecture.md, "Layers and imports").
"""
