"""Kivy touchscreen: a client of the core's local API (issue 6)."""
