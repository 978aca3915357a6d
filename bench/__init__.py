"""Benchmarks of kiosk-agent: `python -m bench` (see docs/benchmarks.md).

Every figure is printed beside the limit it is judged against, and that limit is measured
in the same run on the same machine (raw fsync of the same disk, a bare Unix-socket round
trip, a bare interpreter start), so a figure means the same thing on any machine.
Speed is measured here, never in timed tests.
"""
