"""Build a CcnetAcceptor from configuration words (port, profile name, log folder).

kiosk/devices.py calls this, so kiosk/ never learns the driver's constructor details.
An empty profile name means "detect": start with the first CCNET profile and let the
part number from IDENTIFICATION pick the matching one (`drivers.acceptor_profiles`).
"""

from __future__ import annotations

from pathlib import Path

from drivers.acceptor_profiles import (
    FRAME_LOG_NAME,
    KIND,
    configured,
    named_profile,
    protocol_profiles,
)
from drivers.ccnet.device import LABEL, PROTOCOL, CcnetAcceptor
from drivers.profiles import DEFAULT_DIR, Profile

__all__ = ["BILL_TABLE_CACHE_NAME", "FRAME_LOG_NAME", "KIND", "acceptor_profile",
           "build_ccnet_acceptor", "ccnet_profiles"]

BILL_TABLE_CACHE_NAME = "acceptor-bill-table.json"


def ccnet_profiles(directory: Path = DEFAULT_DIR) -> list[Profile]:
    """Every CCNET acceptor profile in the folder, by name."""
    return protocol_profiles(PROTOCOL, directory)


def acceptor_profile(name: str, directory: Path = DEFAULT_DIR) -> Profile:
    """A CCNET profile by name (or a .toml path); errors list what is available."""
    return named_profile(name, PROTOCOL, LABEL, directory)


def build_ccnet_acceptor(
    port: str,
    profile: str,
    log_dir: Path | None,
    directory: Path = DEFAULT_DIR,
    state_dir: Path | None = None,
    currency: str | None = None,
) -> CcnetAcceptor:
    """`state_dir` holds the bill-table cache (defaults to `log_dir`); `currency` is the
    terminal's (a table without one note of it makes the unit unusable); see
    CcnetAcceptor."""
    base, options = configured(profile, PROTOCOL, LABEL, log_dir=log_dir, state_dir=state_dir,
                               cache_name=BILL_TABLE_CACHE_NAME, currency=currency,
                               directory=directory)
    return CcnetAcceptor(port, base, **options)
