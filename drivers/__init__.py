"""Device drivers: serial transport, bill acceptors, receipt printers, simulators.

Nothing here imports kiosk/, sync/ or ui/ (DESIGN.md layering).
"""
