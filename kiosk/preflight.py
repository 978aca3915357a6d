"""Checks that need more than the TOML file: do the named device profiles exist, and do
they speak the configured protocol? `kiosk check-config` and `kiosk run` both call
`check_devices` before anything is created (ledger, keys, sockets), so a broken
configuration is one clear line and exit 2, never a traceback after side effects.
"""

from __future__ import annotations

import os

from kiosk.config import Config, ConfigError


def check_devices(config: Config) -> None:
    """ConfigError naming the file and key when a device profile or a TLS file named in
    the configuration cannot be used."""
    from drivers.profiles import ProfileError  # drivers/ knows the profile files

    source = str(config.source or "<defaults>")
    ac = config.acceptor
    if ac.kind in ("ccnet", "id003"):
        from drivers.acceptor_profiles import check_acceptor_profile, starting_profiles

        if ac.kind == "ccnet":
            from drivers.ccnet.device import LABEL, PROTOCOL
        else:
            from drivers.id003.device import LABEL, PROTOCOL
        try:
            base, auto = starting_profiles(ac.profile, PROTOCOL, LABEL)
            for profile in (base, *auto):
                check_acceptor_profile(profile, PROTOCOL)
        except (ProfileError, OSError) as exc:
            raise ConfigError(f"{source}: key 'acceptor.profile': {exc}") from exc
    pc = config.printer
    if pc.kind == "escpos":
        from drivers.escpos.factory import printer_profile
        from drivers.escpos.settings import KIND
        from drivers.escpos.settings import PROTOCOL as PRINTER_PROTOCOL

        try:
            profile = printer_profile(pc.profile)
        except (ProfileError, OSError) as exc:
            raise ConfigError(f"{source}: key 'printer.profile': {exc}") from exc
        if profile.kind != KIND or profile.protocol != PRINTER_PROTOCOL:
            raise ConfigError(
                f"{source}: key 'printer.profile': profile {profile.name!r} is "
                f"{profile.kind}/{profile.protocol}, not {KIND}/{PRINTER_PROTOCOL}"
            )
    if config.mqtt.enabled:
        for key in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(config.mqtt, key)
            if path is not None and not os.access(path, os.R_OK):
                raise ConfigError(f"{source}: key 'mqtt.{key}': cannot read {path}")
