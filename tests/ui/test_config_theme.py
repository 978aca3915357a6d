"""UI settings (no window needed) and the colour pairs the screens use (WCAG contrast)."""

from __future__ import annotations

import pytest

from ui.config import Gesture, UiConfigError, parse_args


def test_gesture_parsing():
    assert Gesture.parse("top-left:taps:5") == Gesture("top-left", "taps", 5)
    assert Gesture.parse("top-right:hold:2.5") == Gesture("top-right", "hold", 2.5)
    for bad in ("top-left:taps", "middle:taps:5", "top-left:swipe:3", "top-left:taps:1",
                "top-left:taps:2.5", "top-left:hold:0", "top-left:taps:x"):
        with pytest.raises(UiConfigError):
            Gesture.parse(bad)


def test_settings_from_file_and_flags(tmp_path):
    f = tmp_path / "ui.toml"
    f.write_text('[ui]\ndpi = 120\nlang = "en"\ngesture = "top-right:hold:3"\n'
                 'socket = "/run/kiosk/kiosk.sock"\n', encoding="utf-8")
    cfg = parse_args(["--ui-config", str(f), "--lang", "ru", "--size", "1080x1920"])
    assert (cfg.dpi, cfg.lang, cfg.width, cfg.height) == (120, "ru", 1080, 1920)
    assert str(cfg.gesture) == "top-right:hold:3" and str(cfg.socket) == "/run/kiosk/kiosk.sock"
    f.write_text("[ui]\ndpii = 120\n", encoding="utf-8")
    with pytest.raises(UiConfigError, match=r"ui\.dpii"):
        parse_args(["--ui-config", str(f)])
    with pytest.raises(UiConfigError, match="dpi"):
        parse_args(["--dpi", "5"])


def _luminance(rgba) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgba[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_every_text_colour_pair_is_high_contrast(window):
    from ui import theme
    from ui.widgets import STYLES

    for style, (normal, down, ink) in STYLES.items():
        assert contrast(normal, ink) >= 7.0, style  # WCAG AAA for button captions
        assert contrast(down, ink) >= 4.5, f"{style} pressed"
    pairs = {
        "text on white": (theme.INK, theme.BG),
        "secondary text on white": (theme.INK_SOFT, theme.BG),
        "phone on header": (theme.PHONE_INK, theme.HEADER_BG),
        "header text": (theme.HEADER_INK, theme.HEADER_BG),
        "warning text": (theme.INK, theme.WARN_BG),
        "info text": (theme.INK, theme.INFO_BG),
        "field text": (theme.INK, theme.FIELD_BG),
        "good news": (theme.GOOD_INK, theme.BG),
        "bad news": (theme.BAD_INK, theme.BG),
        "emphasis": (theme.PRIMARY, theme.BG),
        "disabled caption": (theme.DISABLED_INK, theme.DISABLED),
    }
    for name, (ink, bg) in pairs.items():
        assert contrast(ink, bg) >= 4.5, name
