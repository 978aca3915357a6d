"""Build an Id003Acceptor from configuration words (port, profile name, log folder).

kiosk/devices.py calls this, so kiosk/ never learns the driver's constructor details.
An empty profile name means "detect": start with the first ID-003 profile and let the
version string from VERSION REQUEST pick the matching one.
"""

from __future__ import annotations

from pathlib import Path

from drivers.id003.device import PROTOCOL, Id003Acceptor
from drivers.profiles import DEFAULT_DIR, Profile, ProfileError, load_profile, load_profiles

KIND = "acceptor"
FRAME_LOG_NAME = "acceptor-frames.log"
BILL_TABLE_CACHE_NAME = "acceptor-id003-currency.json"
"""Not the CCNET cache's name: a terminal switched between protocols must not read the
other protocol's bill types as escrow codes."""
STACK_MARKER_NAME = "acceptor-id003-stack.json"


def id003_profiles(directory: Path = DEFAULT_DIR) -> list[Profile]:
    """Every ID-003 acceptor profile in the folder, by name."""
    profiles = load_profiles(directory)
    return [p for _, p in sorted(profiles.items()) if p.kind == KIND and p.protocol == PROTOCOL]


def acceptor_profile(name: str, directory: Path = DEFAULT_DIR) -> Profile:
    """An ID-003 profile by name (or a .toml path); errors list what is available."""
    if name.endswith(".toml"):
        return load_profile(Path(name))
    candidates = id003_profiles(directory)
    for prof in candidates:
        if prof.name == name:
            return prof
    available = ", ".join(p.name for p in candidates) or "none"
    raise ProfileError(f"no ID-003 acceptor profile named {name!r} in {directory}; "
                       f"one of: {available}")


def build_id003_acceptor(
    port: str,
    profile: str,
    log_dir: Path | None,
    state_dir: Path | None = None,
    directory: Path = DEFAULT_DIR,
) -> Id003Acceptor:
    """`state_dir` holds the currency-table cache and the stack marker (defaults to
    `log_dir`); see Id003Acceptor."""
    if profile:
        base, auto = acceptor_profile(profile, directory), []
    else:
        auto = id003_profiles(directory)
        if not auto:
            raise ProfileError(f"no ID-003 acceptor profiles in {directory}")
        base = auto[0]
    state = state_dir or log_dir
    return Id003Acceptor(
        port,
        base,
        auto_profiles=auto,
        frame_log_path=log_dir / FRAME_LOG_NAME if log_dir is not None else None,
        bill_table_cache=state / BILL_TABLE_CACHE_NAME if state is not None else None,
        stack_marker=state / STACK_MARKER_NAME if state is not None else None,
    )
