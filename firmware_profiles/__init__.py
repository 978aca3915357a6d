"""Firmware profiles: TOML data, one file per device model or firmware family."""
