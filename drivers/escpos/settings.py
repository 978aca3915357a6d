"""The `[printer]` section of a firmware profile, validated into one typed object.

Every model difference the driver knows about (columns, ESC t number for CP866, cut,
QR, status flavour, presenter) comes from here, so supporting a new model is a TOML file.
Errors name the profile file and key (drivers.profiles.Profile.get).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar

from drivers.escpos.commands import (
    CITIZEN_RETRACT_MAX_S,
    QR_MODULE_MAX,
    QR_MODULE_MIN,
    CutMode,
    PresenterAction,
    QrErrorLevel,
)
from drivers.profiles import Profile, ProfileError

KIND = "printer"
PROTOCOL = "escpos"
MIN_COLUMNS = 16
MAX_COLUMNS = 80
DEFAULT_FEED_BEFORE_CUT = 4
DEFAULT_QR_MODULE = 6
DEFAULT_STATUS_TIMEOUT_MS = 200
MAX_STATUS_TIMEOUT_MS = 10_000
DEFAULT_PRINT_TIMEOUT_MS = 15_000

E = TypeVar("E", bound=enum.Enum)


class PresenterKind(enum.Enum):
    NONE = "none"
    CUSTOM_FS_P = "custom_fs_p"  # Custom VKP80III: FS P L B A T
    CUSTOM_GS_E = "custom_gs_e"  # Custom VKP80 / KPM: GS e 3 m
    CITIZEN_GS_R = "citizen_gs_r"  # Citizen PPU-231 family: GS R 1 n auto-retract


@dataclass(frozen=True)
class PresenterSettings:
    kind: PresenterKind = PresenterKind.NONE
    length: int = 0  # FS P: millimetres (5 mm steps); GS e 3: printer steps
    action: PresenterAction = PresenterAction.RETRACT
    timeout_s: int = 0


@dataclass(frozen=True)
class PrinterSettings:
    name: str
    columns: int
    codepage_number: int
    cut: CutMode
    cut_feed: int
    feed_before_cut: int
    qr: bool
    qr_module_size: int
    qr_error_level: QrErrorLevel
    full_status: bool
    status_timeout_ms: int
    print_timeout_ms: int
    realtime_clear: bool
    presenter: PresenterSettings

    @classmethod
    def from_profile(cls, profile: Profile) -> PrinterSettings:
        where = str(profile.path)
        if profile.kind != KIND or profile.protocol != PROTOCOL:
            raise ProfileError(
                f"{where}: expected kind={KIND!r} protocol={PROTOCOL!r}, "
                f"got {profile.kind!r}/{profile.protocol!r}"
            )
        columns = _ranged(profile, "printer.columns", MIN_COLUMNS, MAX_COLUMNS)
        cut_name = profile.get("printer.cut", str)
        level_name = profile.get("printer.qr_error_level", str, "M")
        return cls(
            name=profile.name,
            columns=columns,
            codepage_number=_ranged(profile, "printer.codepage_number", 0, 255),
            cut=_enum(profile, "printer.cut", CutMode, cut_name),
            cut_feed=_ranged(profile, "printer.cut_feed", 0, 255, 0),
            feed_before_cut=_ranged(
                profile, "printer.feed_before_cut", 0, 255, DEFAULT_FEED_BEFORE_CUT
            ),
            qr=profile.get("printer.qr", bool),
            qr_module_size=_ranged(
                profile,
                "printer.qr_module_size",
                QR_MODULE_MIN,
                QR_MODULE_MAX,
                DEFAULT_QR_MODULE,
            ),
            qr_error_level=_by_name(profile, "printer.qr_error_level", QrErrorLevel, level_name),
            full_status=profile.get("printer.full_status", bool),
            status_timeout_ms=_ranged(
                profile, "printer.status_timeout_ms", 1, MAX_STATUS_TIMEOUT_MS
            ),
            print_timeout_ms=_ranged(
                profile, "printer.print_timeout_ms", 1, 10 * 60_000, DEFAULT_PRINT_TIMEOUT_MS
            ),
            realtime_clear=profile.get("printer.realtime_clear", bool, False),
            presenter=_presenter(profile),
        )


def _ranged(profile: Profile, key: str, low: int, high: int, default: int | None = None) -> int:
    value = profile.get(key, int, default)
    if not low <= value <= high:
        raise ProfileError(f"{profile.path}: key '{key}' must be in {low}..{high}, got {value}")
    return value


def _enum(profile: Profile, key: str, kind: type[E], value: str) -> E:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise ProfileError(
            f"{profile.path}: key '{key}' must be one of {allowed}; got {value!r}"
        ) from None


def _by_name(profile: Profile, key: str, kind: type[E], value: str) -> E:
    try:
        return kind[value]
    except KeyError:
        allowed = ", ".join(m.name for m in kind)
        raise ProfileError(
            f"{profile.path}: key '{key}' must be one of {allowed}; got {value!r}"
        ) from None


def _presenter(profile: Profile) -> PresenterSettings:
    kind = _enum(
        profile,
        "printer.presenter.kind",
        PresenterKind,
        profile.get("printer.presenter.kind", str, PresenterKind.NONE.value),
    )
    if kind is PresenterKind.NONE:
        return PresenterSettings()
    action_name = profile.get("printer.presenter.action", str, "RETRACT").upper()
    settings = PresenterSettings(
        kind=kind,
        length=_ranged(profile, "printer.presenter.length", 0, 255 * 5, 0),
        action=_by_name(profile, "printer.presenter.action", PresenterAction, action_name),
        timeout_s=_ranged(profile, "printer.presenter.timeout_s", 0, 255, 0),
    )
    if kind is PresenterKind.CITIZEN_GS_R and settings.timeout_s > CITIZEN_RETRACT_MAX_S:
        raise ProfileError(
            f"{profile.path}: key 'printer.presenter.timeout_s' must be 0..{CITIZEN_RETRACT_MAX_S}"
            f" for {kind.value}, got {settings.timeout_s}"
        )
    return settings
