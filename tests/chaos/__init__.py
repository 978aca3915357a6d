"""Reliability runs (issue 9): chaos, line-fault soak, disk faults.

- `python -m tests.chaos chaos` (`make chaos`): >= 1,000 payments through the real CCNET
  driver and ESC/POS printer driver on pseudo-terminals, the real core daemon with MQTT to
  a real mosquitto, SIGKILLs at random instants (many between a stacked bill's commit and
  its ACK), broker stops and starts, a desk consumer; then a bill-by-bill reconciliation.
- `python -m tests.chaos soak`: random garbage, dropped replies, CRC errors, unplug/replug
  of both simulated devices during payments; recovery times.
- `python -m tests.chaos disk`: disk full and read-only ledger during a session (M10).

Short versions run in `make test` (test_chaos_short.py, test_line_soak.py,
test_disk_faults.py). docs/reliability.md has the figures and the commands.
"""
