"""Firmware profiles: one TOML file per device model or firmware family.

A profile is data (serial settings, timing, identification patterns, printer columns...).
This module loads and validates the part every profile shares; each driver validates its
own sections through `Profile.get`, which names the file and key in every error.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "firmware_profiles"

KINDS = ("acceptor", "printer")
PARITIES = {"none": "N", "even": "E", "odd": "O"}

T = TypeVar("T")


class ProfileError(ValueError):
    """A profile file is broken; the message names the file and the key."""


@dataclass(frozen=True)
class SerialSettings:
    baudrate: int
    bytesize: int
    parity: str  # pyserial letter: N, E, O
    stopbits: int


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str
    protocol: str
    path: Path
    serial: SerialSettings
    identify: tuple[re.Pattern[str], ...]
    data: dict[str, Any]

    def get(self, dotted: str, expected: type[T], default: T | None = None) -> T:
        """Typed access to any key (e.g. "timing.poll_ms"); errors name file and key."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not None:
                    return default
                raise ProfileError(f"{self.path}: missing key '{dotted}'")
            node = node[part]
        if expected is float and isinstance(node, int) and not isinstance(node, bool):
            node = float(node)
        if not isinstance(node, expected) or (expected is int and isinstance(node, bool)):
            raise ProfileError(
                f"{self.path}: key '{dotted}' must be {expected.__name__}, "
                f"got {type(node).__name__} {node!r}"
            )
        return node

    def matches(self, identification: str) -> bool:
        return any(p.search(identification) for p in self.identify)


def _require(data: dict[str, Any], path: Path, key: str, expected: type) -> Any:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ProfileError(f"{path}: missing key '{key}'")
        node = node[part]
    if not isinstance(node, expected) or (expected is int and isinstance(node, bool)):
        raise ProfileError(
            f"{path}: key '{key}' must be {expected.__name__}, got {type(node).__name__} {node!r}"
        )
    return node


def load_profile(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    name = _require(data, path, "profile.name", str)
    kind = _require(data, path, "profile.kind", str)
    if kind not in KINDS:
        raise ProfileError(f"{path}: key 'profile.kind' must be one of {KINDS}, got {kind!r}")
    protocol = _require(data, path, "profile.protocol", str)
    parity = _require(data, path, "serial.parity", str)
    if parity not in PARITIES:
        raise ProfileError(
            f"{path}: key 'serial.parity' must be one of {sorted(PARITIES)}, got {parity!r}"
        )
    serial = SerialSettings(
        baudrate=_require(data, path, "serial.baudrate", int),
        bytesize=_require(data, path, "serial.bytesize", int),
        parity=PARITIES[parity],
        stopbits=_require(data, path, "serial.stopbits", int),
    )
    if serial.bytesize not in (7, 8) or serial.stopbits not in (1, 2) or serial.baudrate <= 0:
        raise ProfileError(f"{path}: key 'serial' has impossible settings {serial}")
    patterns = _require(data, path, "identify.patterns", list)
    compiled = []
    for i, pat in enumerate(patterns):
        if not isinstance(pat, str):
            raise ProfileError(f"{path}: key 'identify.patterns[{i}]' must be a string")
        try:
            compiled.append(re.compile(pat))
        except re.error as exc:
            raise ProfileError(f"{path}: key 'identify.patterns[{i}]' bad regex: {exc}") from exc
    return Profile(name, kind, protocol, path, serial, tuple(compiled), data)


def load_profiles(directory: Path = DEFAULT_DIR) -> dict[str, Profile]:
    """All profiles in a folder, keyed by name; duplicate names are an error."""
    profiles: dict[str, Profile] = {}
    for path in sorted(directory.glob("*.toml")):
        prof = load_profile(path)
        if prof.name in profiles:
            raise ProfileError(
                f"{path}: profile name {prof.name!r} already used by {profiles[prof.name].path}"
            )
        profiles[prof.name] = prof
    return profiles


def find_profile(profiles: dict[str, Profile], kind: str, protocol: str, ident: str) -> Profile:
    """The first profile of this kind/protocol whose patterns match the identification."""
    for prof in profiles.values():
        if prof.kind == kind and prof.protocol == protocol and prof.matches(ident):
            return prof
    raise ProfileError(f"no {protocol} {kind} profile matches identification {ident!r}")
