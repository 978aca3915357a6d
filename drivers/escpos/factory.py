"""Build an EscposPrinter from configuration words (port, profile name, log folder).

kiosk/devices.py calls this; keeping it here means kiosk/ never learns the driver's
constructor details.
"""

from __future__ import annotations

from pathlib import Path

from drivers.escpos.printer import EscposPrinter
from drivers.escpos.settings import KIND, PROTOCOL
from drivers.profiles import DEFAULT_DIR, Profile, ProfileError, load_profile, load_profiles

FRAME_LOG_NAME = "printer-frames.log"


def printer_profile(name: str, directory: Path = DEFAULT_DIR) -> Profile:
    """A printer profile by name (or a .toml path); errors list what is available."""
    if name.endswith(".toml"):
        return load_profile(Path(name))
    profiles = load_profiles(directory)
    available = sorted(n for n, p in profiles.items() if p.kind == KIND and p.protocol == PROTOCOL)
    if not name:
        raise ProfileError(
            "printer.profile is required for an ESC/POS printer (automatic detection is "
            f"not implemented); one of: {', '.join(available)}"
        )
    if name not in available:
        raise ProfileError(
            f"no ESC/POS printer profile named {name!r}; one of: {', '.join(available)}"
        )
    return profiles[name]


def build_escpos_printer(
    port: str, profile: str, log_dir: Path | None, directory: Path = DEFAULT_DIR
) -> EscposPrinter:
    log_path = log_dir / FRAME_LOG_NAME if log_dir is not None else None
    return EscposPrinter(printer_profile(profile, directory), port, frame_log_path=log_path)
