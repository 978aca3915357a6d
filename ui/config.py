"""The UI's own settings: where the core is, how big a millimetre is, how a technician gets in.

The UI imports nothing of the core's configuration (layering: ui/ → the local-API client
only), so `kiosk ui -c kiosk.toml` resolves the socket, terminal id and support phone from
the core's file and passes them here as plain values; everything else comes from the
command line or an optional `[ui]` TOML table (`--ui-config`). Nothing here imports Kivy:
the settings must be known before the window exists.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# The one reader of outside tables; a pure module that imports nothing of the project
# (setup.cfg lets ui.config, and only it, use it: it is not a way to the core).
from drivers.fieldspec import Field, Invalid, Table

LANGS = ("ru", "en")
CORNERS = ("top-left", "top-right")
GESTURES = ("taps", "hold")
MIN_DPI, MAX_DPI = 50.0, 600.0
MIN_DIAG, MAX_DIAG = 5.0, 100.0  # inches

# -- panels in the field (docs/ui.md, "Screen sizes") ----------------------------------
MM_PER_INCH = 25.4
FALLBACK_DPI = 96.0  # an unknown resolution without a configured DPI or diagonal


@dataclass(frozen=True)
class PanelSize:
    """A screen terminals are built with: resolution and diagonal give its real DPI."""

    width: int
    height: int
    diagonal_in: float
    note: str

    @property
    def dpi(self) -> float:
        return math.hypot(self.width, self.height) / self.diagonal_in

    @property
    def size_mm(self) -> tuple[float, float]:
        px_mm = MM_PER_INCH / self.dpi
        return self.width * px_mm, self.height * px_mm

    @property
    def name(self) -> str:
        return f"{self.width}x{self.height}"


# The first entry of a resolution is the one assumed when the installer sets neither the
# DPI nor the diagonal: the smaller diagonal, so that a larger panel only makes every
# target physically larger, never smaller.
PANELS: tuple[PanelSize, ...] = (
    PanelSize(800, 600, 12.1, '12.1" 4:3, older terminals'),
    PanelSize(1024, 768, 15.0, '15" 4:3'),
    PanelSize(1280, 1024, 17.0, '17" 5:4'),
    PanelSize(1280, 1024, 19.0, '19" 5:4'),
    PanelSize(1920, 1080, 21.5, '21.5" 16:9'),
    PanelSize(1080, 1920, 21.5, '21.5" 16:9 portrait'),
    PanelSize(1080, 1920, 32.0, '32" 16:9 portrait'),
)


def default_panels() -> tuple[PanelSize, ...]:
    """One panel per resolution: the one assumed without configuration."""
    seen: dict[tuple[int, int], PanelSize] = {}
    for p in PANELS:
        seen.setdefault((p.width, p.height), p)
    return tuple(seen.values())


def panel_dpi(width: int, height: int, dpi: float | None = None,
              diagonal_in: float | None = None) -> float:
    """The real DPI of a `width`×`height` window: the configured DPI, else the configured
    diagonal, else the table's panel of that resolution, else FALLBACK_DPI."""
    if dpi is not None:
        return dpi
    if diagonal_in is not None:
        return math.hypot(width, height) / diagonal_in
    for p in PANELS:
        if (p.width, p.height) == (width, height):
            return p.dpi
    return FALLBACK_DPI


class UiConfigError(ValueError):
    """A UI setting is wrong; the message names it and says what was expected."""


@dataclass(frozen=True)
class Gesture:
    """The hidden way into technician mode: N taps within `window_s`, or a hold of N s."""

    corner: str = "top-left"
    kind: str = "taps"
    count: float = 5  # taps for "taps", seconds for "hold"
    window_s: float = 3.0

    @classmethod
    def parse(cls, text: str) -> Gesture:
        """`top-left:taps:5` or `top-right:hold:3`."""
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise UiConfigError(f"tech gesture {text!r}: expected CORNER:taps|hold:NUMBER")
        corner, kind, number = parts
        if corner not in CORNERS:
            raise UiConfigError(f"tech gesture corner {corner!r}: one of {', '.join(CORNERS)}")
        if kind not in GESTURES:
            raise UiConfigError(f"tech gesture kind {kind!r}: one of {', '.join(GESTURES)}")
        try:
            count = float(number)
        except ValueError as exc:
            raise UiConfigError(f"tech gesture count {number!r} is not a number") from exc
        if count <= 0 or (kind == "taps" and (count != int(count) or count < 2)):
            raise UiConfigError(f"tech gesture count {number!r}: taps ≥ 2, or seconds > 0")
        return cls(corner, kind, count)

    def __str__(self) -> str:
        return f"{self.corner}:{self.kind}:{self.count:g}"


@dataclass(frozen=True)
class UiConfig:
    socket: Path = Path("var/run/kiosk.sock")
    fallback_phone: str = "8 800 555-35-35"  # shown when the core never answered
    terminal_id: str = ""  # shown until the first snapshot names it
    # The panel's real DPI (every size is in millimetres), or its diagonal in inches (the
    # DPI follows from the window's pixels); neither: the table in ui/theme.py by resolution.
    dpi: float | None = None
    diagonal_in: float | None = None
    width: int = 1280
    height: int = 1024
    fullscreen: bool = False
    lang: str = "ru"  # the language a new customer meets
    gesture: Gesture = Gesture()
    tech_idle_s: float = 120.0  # technician mode closes itself after this long untouched
    check_idle_s: float = 60.0  # "check my payment" and help return to the start
    retry_s: float = 1.0  # reconnect interval while the core is unreachable
    report: bool = False  # print READY / SHOWN lines on stdout (tests, bench)

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise UiConfigError(f"lang {self.lang!r}: one of {', '.join(LANGS)}")
        if self.dpi is not None and not MIN_DPI <= self.dpi <= MAX_DPI:
            raise UiConfigError(f"dpi {self.dpi!r}: the screen's real DPI, "
                                f"{MIN_DPI:g}..{MAX_DPI:g}")
        if self.diagonal_in is not None and not MIN_DIAG <= self.diagonal_in <= MAX_DIAG:
            raise UiConfigError(f"diagonal_in {self.diagonal_in!r}: the panel's diagonal in "
                                f"inches, {MIN_DIAG:g}..{MAX_DIAG:g}")
        if self.dpi is not None and self.diagonal_in is not None:
            raise UiConfigError("set the panel's dpi or its diagonal_in, not both")
        for name in ("tech_idle_s", "check_idle_s", "retry_s"):
            if getattr(self, name) <= 0:
                raise UiConfigError(f"{name} must be > 0")


def _positive(value: float) -> bool:
    return value > 0


_SECONDS = Field(float, what="a number of seconds > 0", check=_positive)
# The [ui] table of --ui-config, read the way every outside table is read
# (drivers/fieldspec.py): types, ranges and choices per key, unknown keys refused, the
# dotted path in every refusal. Absent keys keep UiConfig's defaults.
_TOML_SPEC: dict[str, Field] = {
    "socket": Field(str, what="a path"),
    "fallback_phone": Field(str),
    "terminal_id": Field(str),
    "dpi": Field(float, what=f"the screen's real DPI, {MIN_DPI:g}..{MAX_DPI:g}",
                 lo=MIN_DPI, hi=MAX_DPI),
    "diagonal_in": Field(float, what=f"the panel's diagonal in inches, "
                         f"{MIN_DIAG:g}..{MAX_DIAG:g}", lo=MIN_DIAG, hi=MAX_DIAG),
    "width": Field(int, what="a width in pixels > 0", lo=1),
    "height": Field(int, what="a height in pixels > 0", lo=1),
    "fullscreen": Field(bool),
    "lang": Field(str, choices=LANGS),
    "gesture": Field(str, what="CORNER:taps|hold:NUMBER, e.g. top-left:taps:5"),
    "tech_idle_s": _SECONDS,
    "check_idle_s": _SECONDS,
    "retry_s": _SECONDS,
}
_PANEL_KEYS = {"dpi": "diagonal_in", "diagonal_in": "dpi"}  # two ways to say one thing


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UiConfigError(f"{path}: {exc}") from exc
    out: dict[str, Any] = {}
    try:
        table = Table(data.get("ui", {}), "ui")
        for key, field in _TOML_SPEC.items():
            if key in table:
                out[key] = table.get(key, field)
        table.finish()
    except Invalid as exc:
        raise UiConfigError(f"{path}: {exc}") from exc
    if "socket" in out:
        out["socket"] = Path(out["socket"])
    if "gesture" in out:
        out["gesture"] = Gesture.parse(out["gesture"])
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk ui", description="The customer touchscreen.")
    p.add_argument("--ui-config", type=Path, help="TOML file with a [ui] table")
    p.add_argument("--socket", type=Path, help="the core's local API socket")
    p.add_argument("--phone", dest="fallback_phone", help="support phone if the core is down")
    p.add_argument("--terminal-id", help="terminal id shown until the core names it")
    p.add_argument("--dpi", type=float, help="the screen's physical DPI (sizes are in mm)")
    p.add_argument("--diagonal", type=float, dest="diagonal_in",
                   help="the panel's diagonal in inches (instead of --dpi)")
    p.add_argument("--size", help="window size WIDTHxHEIGHT in pixels")
    p.add_argument("--fullscreen", action="store_true", default=None)
    p.add_argument("--lang", choices=LANGS, help="the language a new customer meets")
    p.add_argument("--tech-gesture", help="CORNER:taps|hold:N, e.g. top-left:taps:5")
    p.add_argument("--tech-idle", type=float, dest="tech_idle_s", help="seconds")
    p.add_argument("--report", action="store_true", default=None,
                   help="print READY and SHOWN lines on stdout (tests, benchmarks)")
    return p


def parse_args(argv: list[str] | None) -> UiConfig:
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = _from_toml(args.ui_config) if args.ui_config else {}
    for key in ("socket", "fallback_phone", "terminal_id", "dpi", "diagonal_in", "fullscreen",
                "lang",
                "tech_idle_s", "report"):
        value = getattr(args, key)
        if value is not None:
            values[key] = value
            if key in _PANEL_KEYS:  # the panel given on the command line wins over the file's
                values.pop(_PANEL_KEYS[key], None)
    if args.size:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError as exc:
            raise UiConfigError(f"--size {args.size!r}: expected WIDTHxHEIGHT") from exc
        values.update(width=w, height=h)
    if args.tech_gesture:
        values["gesture"] = Gesture.parse(args.tech_gesture)
    try:
        return replace(UiConfig(), **values)
    except TypeError as exc:
        raise UiConfigError(str(exc)) from exc
