"""Choosing a bill acceptor's firmware profile from configuration words, any protocol.

Both protocols' factories (what kiosk/devices.py calls) work the same way: a name (or a
.toml path) picks one profile; an empty name means "detect": start with the protocol's
first profile and let the unit's identification (CCNET part number, ID-003 version
string) pick the matching one. Only the protocol name and the wording differ.
"""

from __future__ import annotations

from pathlib import Path

from drivers.acceptor_base import AcceptorOptions
from drivers.profiles import DEFAULT_DIR, Profile, ProfileError, load_profile, load_profiles

KIND = "acceptor"
FRAME_LOG_NAME = "acceptor-frames.log"


def protocol_profiles(protocol: str, directory: Path = DEFAULT_DIR) -> list[Profile]:
    """Every acceptor profile of `protocol` in the folder, by name."""
    profiles = load_profiles(directory)
    return [p for _, p in sorted(profiles.items()) if p.kind == KIND and p.protocol == protocol]


def named_profile(name: str, protocol: str, label: str, directory: Path = DEFAULT_DIR
                  ) -> Profile:
    """A profile by name (or a .toml path); errors list what is available."""
    if name.endswith(".toml"):
        return load_profile(Path(name))
    candidates = protocol_profiles(protocol, directory)
    for prof in candidates:
        if prof.name == name:
            return prof
    available = ", ".join(p.name for p in candidates) or "none"
    raise ProfileError(f"no {label} acceptor profile named {name!r} in {directory}; "
                       f"one of: {available}")


def starting_profiles(name: str, protocol: str, label: str, directory: Path = DEFAULT_DIR
                      ) -> tuple[Profile, list[Profile]]:
    """The profile a driver starts with, and the ones its identification may switch to
    (none when the configuration names one)."""
    if name:
        return named_profile(name, protocol, label, directory), []
    auto = protocol_profiles(protocol, directory)
    if not auto:
        raise ProfileError(f"no {label} acceptor profiles in {directory}")
    return auto[0], auto


def check_acceptor_profile(profile: Profile, protocol: str) -> Profile:
    """`profile` itself, or ProfileError when it is not an acceptor of `protocol`."""
    if profile.kind != KIND or profile.protocol != protocol:
        raise ProfileError(
            f"{profile.path}: profile {profile.name!r} is {profile.kind}/{profile.protocol},"
            f" not {KIND}/{protocol}"
        )
    return profile


def configured(name: str, protocol: str, label: str, *, log_dir: Path | None,
               state_dir: Path | None, cache_name: str, currency: str | None,
               directory: Path = DEFAULT_DIR) -> tuple[Profile, AcceptorOptions]:
    """The starting profile and the options of an acceptor built from configuration
    words, the same for every protocol: the frame log in `log_dir`, the bill-table cache
    (`cache_name`) in `state_dir` (default `log_dir`), the auto profiles when no name is
    given, the terminal's currency."""
    base, auto = starting_profiles(name, protocol, label, directory)
    state = state_dir or log_dir
    options = AcceptorOptions(
        auto_profiles=auto,
        frame_log_path=log_dir / FRAME_LOG_NAME if log_dir is not None else None,
        bill_table_cache=state / cache_name if state is not None else None,
        currency=currency,
    )
    return base, options
