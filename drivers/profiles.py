"""Firmware profiles: one TOML file per device model or firmware family.

A profile is data (serial settings, timing, identification patterns, printer columns...).
This module loads and validates the part every profile shares; each driver validates its
own sections through `Profile.get`, which names the file and key in every error. Both read
through `drivers.fieldspec`, the project's one way of checking outside tables.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from drivers.fieldspec import REQUIRED, Field, Invalid, join, lookup

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
        """Typed access to any key (e.g. "timing.poll_ms"); errors name file and key.
        `default` None: the key is required. An int is taken where a float is expected."""
        field = Field(expected, REQUIRED if default is None else default)
        try:
            value: T = lookup(self.data, dotted, field)
        except Invalid as exc:
            raise ProfileError(f"{self.path}: {exc}") from exc
        return value

    def matches(self, identification: str) -> bool:
        return any(p.search(identification) for p in self.identify)


def _require(data: dict[str, Any], path: Path, key: str, field: Field) -> Any:
    try:
        return lookup(data, key, field)
    except Invalid as exc:
        raise ProfileError(f"{path}: {exc}") from exc


_PROFILE_FIELDS: dict[str, Field] = {
    "profile.name": Field(str),
    "profile.kind": Field(str, choices=KINDS),
    "profile.protocol": Field(str),
    "serial.parity": Field(str, choices=tuple(PARITIES)),
    "serial.baudrate": Field(int, lo=1, what="a positive int"),
    "serial.bytesize": Field(int, choices=(7, 8)),
    "serial.stopbits": Field(int, choices=(1, 2)),
    "identify.patterns": Field(list),
}
"""The keys every profile has; each driver reads its own sections with `Profile.get`."""


def load_profile(path: Path) -> Profile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    shared = {key: _require(data, path, key, field) for key, field in _PROFILE_FIELDS.items()}
    name, kind, protocol = (shared[f"profile.{k}"] for k in ("name", "kind", "protocol"))
    serial = SerialSettings(
        baudrate=shared["serial.baudrate"],
        bytesize=shared["serial.bytesize"],
        parity=PARITIES[shared["serial.parity"]],
        stopbits=shared["serial.stopbits"],
    )
    compiled = []
    for i, item in enumerate(shared["identify.patterns"]):
        where = join("identify.patterns", i)
        try:
            pat = Field(str, what="a string").read(item, where)
        except Invalid as exc:
            raise ProfileError(f"{path}: {exc}") from exc
        try:
            compiled.append(re.compile(pat))
        except re.error as exc:
            raise ProfileError(f"{path}: key '{where}' bad regex: {exc}") from exc
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
