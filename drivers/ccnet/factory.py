"""Build a CcnetAcceptor from configuration words (port, profile name, log folder).

kiosk/devices.py calls this, so kiosk/ never learns the driver's constructor details.
An empty profile name means "detect": start with the first CCNET profile and let the
part number from IDENTIFICATION pick the matching one.
"""

from __future__ import annotations

from pathlib import Path

from drivers.ccnet.device import PROTOCOL, CcnetAcceptor
from drivers.profiles import DEFAULT_DIR, Profile, ProfileError, load_profile, load_profiles

KIND = "acceptor"
FRAME_LOG_NAME = "acceptor-frames.log"
BILL_TABLE_CACHE_NAME = "acceptor-bill-table.json"


def ccnet_profiles(directory: Path = DEFAULT_DIR) -> list[Profile]:
    """Every CCNET acceptor profile in the folder, by name."""
    profiles = load_profiles(directory)
    return [p for _, p in sorted(profiles.items()) if p.kind == KIND and p.protocol == PROTOCOL]


def acceptor_profile(name: str, directory: Path = DEFAULT_DIR) -> Profile:
    """A CCNET profile by name (or a .toml path); errors list what is available."""
    if name.endswith(".toml"):
        return load_profile(Path(name))
    candidates = ccnet_profiles(directory)
    for prof in candidates:
        if prof.name == name:
            return prof
    available = ", ".join(p.name for p in candidates) or "none"
    raise ProfileError(f"no CCNET acceptor profile named {name!r} in {directory}; "
                       f"one of: {available}")


def build_ccnet_acceptor(
    port: str,
    profile: str,
    log_dir: Path | None,
    directory: Path = DEFAULT_DIR,
    state_dir: Path | None = None,
) -> CcnetAcceptor:
    """`state_dir` holds the bill-table cache (defaults to `log_dir`); see CcnetAcceptor."""
    if profile:
        base, auto = acceptor_profile(profile, directory), []
    else:
        auto = ccnet_profiles(directory)
        if not auto:
            raise ProfileError(f"no CCNET acceptor profiles in {directory}")
        base = auto[0]
    cache_dir = state_dir or log_dir
    return CcnetAcceptor(
        port,
        base,
        auto_profiles=auto,
        frame_log_path=log_dir / FRAME_LOG_NAME if log_dir is not None else None,
        bill_table_cache=cache_dir / BILL_TABLE_CACHE_NAME if cache_dir is not None else None,
    )
