"""Sizes in millimetres, the panels terminals have, and high-contrast colours.

Every size is physical (kivy.metrics.mm at the panel's real DPI) because the rules are
physical: touch targets at least 15 mm (docs/ui.md, "Screen sizes"), text readable at
arm's length in the cold. The screens are designed at full size (buttons 20–22 mm) for a
window of at least `DESIGN_W` × `DESIGN_H` mm; a smaller panel (an old 12.1" 800×600, a
15" 1024×768) gets the same layout zoomed down by `fit_window()`, never below
`MIN_SCALE`, where a 20 mm button is still 15 mm. Colours are dark text on white and
white text on dark blue, red or green; every pair is above WCAG AA (4.5:1), most above
AAA (7:1).
"""

from __future__ import annotations

from kivy.metrics import Metrics
from kivy.metrics import mm as _mm

from ui.config import MM_PER_INCH

# -- sizes (millimetres) -------------------------------------------------------------
# Every size below is a design size: on screen it is multiplied by the window's scale.
TOUCH_FLOOR = 15.0  # the rule, in real millimetres on the panel, at any scale
TOUCH_MIN = 20.0  # the smallest design size of a touch target
MIN_SCALE = TOUCH_FLOOR / TOUCH_MIN  # zooming further would break the rule
DESIGN_W = 262.0  # the window (mm) every screen fits at full size: the search keyboard
DESIGN_H = 244.0  # the tallest screen, provider search (measured by tests/ui/test_layout.py)
BUTTON_H = 22.0
KEY_W = 28.0
KEY_H = 21.0
GAP = 3.0
PAD = 6.0
HEADER_H = 24.0
FOOTER_H = 11.0
CORNER = 24.0  # the hidden technician zone (a header cell)

# font sizes (em size in millimetres)
F_SMALL = 5.0
F_BODY = 6.5
F_BUTTON = 7.5
F_LARGE = 9.0
F_TITLE = 10.5
F_KEY = 10.0
F_BIG = 15.0

# -- colours (RGBA 0..1) -------------------------------------------------------------
WHITE = (1, 1, 1, 1)
BG = (1, 1, 1, 1)
INK = (0.07, 0.07, 0.07, 1)  # text on white: 18.9:1
INK_SOFT = (0.22, 0.22, 0.22, 1)  # secondary text on white: 12.6:1
HEADER_BG = (0.07, 0.09, 0.16, 1)
HEADER_INK = (1, 1, 1, 1)
PHONE_INK = (1, 0.84, 0.25, 1)  # amber on near-black: 12:1
PRIMARY = (0.05, 0.24, 0.57, 1)  # white on it: 10.4:1
PRIMARY_DOWN = (0.02, 0.13, 0.35, 1)
SECONDARY = (0.88, 0.89, 0.91, 1)  # ink on it: 14.5:1
SECONDARY_DOWN = (0.72, 0.74, 0.78, 1)
KEY_DOWN = (0.62, 0.76, 0.98, 1)  # a pressed key lights up; ink on it: 10:1
DANGER = (0.62, 0.07, 0.10, 1)  # white on it: 8.4:1
DANGER_DOWN = (0.42, 0.03, 0.05, 1)
GOOD = (0.05, 0.40, 0.18, 1)  # white on it: 7.6:1
GOOD_DOWN = (0.02, 0.26, 0.10, 1)
DISABLED = (0.80, 0.80, 0.80, 1)
DISABLED_INK = (0.30, 0.30, 0.30, 1)  # on DISABLED: 5.6:1
WARN_BG = (1, 0.87, 0.45, 1)  # ink on it: 14:1
INFO_BG = (0.91, 0.95, 1, 1)
FIELD_BG = (0.96, 0.96, 0.97, 1)
FIELD_LINE = (0.05, 0.24, 0.57, 1)
BACKDROP = (0, 0, 0, 0.72)
GOOD_INK = (0.0, 0.36, 0.15, 1)
BAD_INK = (0.62, 0.07, 0.10, 1)


_scale = 1.0


def mm(value: float) -> float:
    """Design millimetres to pixels: real millimetres at the panel's DPI times the
    window's scale (both set before any widget is built)."""
    return float(_mm(value)) * _scale


def real_mm(value: float) -> float:
    """Real millimetres on the panel to pixels (the touch-target rule is in these)."""
    return float(_mm(value))


def scale() -> float:
    return _scale


def set_dpi(dpi: float) -> None:
    """Tell Kivy the physical DPI of the screen: all mm sizes follow it."""
    Metrics.dpi = dpi


def scale_for(width_px: float, height_px: float, dpi: float) -> float:
    """The zoom a window needs so that every screen fits: 1 on a window of at least
    DESIGN_W × DESIGN_H mm, less on a smaller one, never below MIN_SCALE."""
    px_mm = MM_PER_INCH / dpi
    fit = min(width_px * px_mm / DESIGN_W, height_px * px_mm / DESIGN_H)
    return max(MIN_SCALE, min(1.0, fit))


def too_small(width_px: float, height_px: float, dpi: float) -> bool:
    """Even at MIN_SCALE the screens would not fit: a panel smaller than any in the table
    (the UI still runs, and says so in its log)."""
    px_mm = MM_PER_INCH / dpi
    return (width_px * px_mm < DESIGN_W * MIN_SCALE - 0.5
            or height_px * px_mm < DESIGN_H * MIN_SCALE - 0.5)


def fit_window(width_px: float, height_px: float, dpi: float) -> float:
    """Set the DPI and the scale for this window (before the widgets are built)."""
    global _scale
    set_dpi(dpi)
    _scale = scale_for(width_px, height_px, dpi)
    return _scale
