"""Build an Id003Acceptor from configuration words (port, profile name, log folder).

kiosk/devices.py calls this, so kiosk/ never learns the driver's constructor details.
An empty profile name means "detect": start with the first ID-003 profile and let the
version string from VERSION REQUEST pick the matching one (`drivers.acceptor_profiles`).
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
from drivers.id003.device import LABEL, PROTOCOL, Id003Acceptor
from drivers.profiles import DEFAULT_DIR, Profile

__all__ = ["BILL_TABLE_CACHE_NAME", "FRAME_LOG_NAME", "KIND", "STACK_MARKER_NAME",
           "acceptor_profile", "build_id003_acceptor", "id003_profiles"]

BILL_TABLE_CACHE_NAME = "acceptor-id003-currency.json"
"""Not the CCNET cache's name: a terminal switched between protocols must not read the
other protocol's bill types as escrow codes."""
STACK_MARKER_NAME = "acceptor-id003-stack.json"


def id003_profiles(directory: Path = DEFAULT_DIR) -> list[Profile]:
    """Every ID-003 acceptor profile in the folder, by name."""
    return protocol_profiles(PROTOCOL, directory)


def acceptor_profile(name: str, directory: Path = DEFAULT_DIR) -> Profile:
    """An ID-003 profile by name (or a .toml path); errors list what is available."""
    return named_profile(name, PROTOCOL, LABEL, directory)


def build_id003_acceptor(
    port: str,
    profile: str,
    log_dir: Path | None,
    state_dir: Path | None = None,
    directory: Path = DEFAULT_DIR,
    currency: str | None = None,
) -> Id003Acceptor:
    """`state_dir` holds the currency-table cache and the stack marker (defaults to
    `log_dir`); `currency` is the terminal's (a table without one note of it makes the
    unit unusable); see Id003Acceptor."""
    base, options = configured(profile, PROTOCOL, LABEL, log_dir=log_dir, state_dir=state_dir,
                               cache_name=BILL_TABLE_CACHE_NAME, currency=currency,
                               directory=directory)
    state = state_dir or log_dir
    marker = state / STACK_MARKER_NAME if state is not None else None
    return Id003Acceptor(port, base, stack_marker=marker, **options)
