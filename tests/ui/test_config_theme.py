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


def test_panel_table_gives_each_resolution_its_real_dpi():
    from ui.config import PANELS, default_panels, panel_dpi

    # the physical panels terminals have (docs/ui.md "Screen sizes"): DPI from the diagonal
    expected = {(800, 600, 12.1): 82.6, (1024, 768, 15.0): 85.3, (1280, 1024, 17.0): 96.4,
                (1280, 1024, 19.0): 86.3, (1920, 1080, 21.5): 102.5,
                (1080, 1920, 21.5): 102.5, (1080, 1920, 32.0): 68.8}
    assert {(p.width, p.height, p.diagonal_in): round(p.dpi, 1) for p in PANELS} == expected
    assert [(p.name, p.diagonal_in) for p in default_panels()] == [
        ("800x600", 12.1), ("1024x768", 15.0), ("1280x1024", 17.0), ("1920x1080", 21.5),
        ("1080x1920", 21.5)]  # the smaller diagonal: a larger panel only enlarges targets
    assert round(panel_dpi(800, 600), 1) == 82.6  # nothing configured: the table
    assert panel_dpi(800, 600, dpi=100) == 100  # the installer's DPI wins
    assert round(panel_dpi(1280, 1024, diagonal_in=19), 1) == 86.3  # or the diagonal
    assert panel_dpi(1366, 768) == 96.0  # not in the table, nothing set: the fallback


def test_panel_size_settings(tmp_path):
    cfg = parse_args(["--size", "1280x1024", "--diagonal", "19"])
    assert (cfg.dpi, cfg.diagonal_in) == (None, 19.0)
    f = tmp_path / "ui.toml"
    f.write_text("[ui]\ndiagonal_in = 19\n", encoding="utf-8")
    assert parse_args(["--ui-config", str(f)]).diagonal_in == 19.0
    # the command line wins over the file, whichever way the file said it
    cfg = parse_args(["--ui-config", str(f), "--dpi", "90"])
    assert (cfg.dpi, cfg.diagonal_in) == (90.0, None)
    f.write_text("[ui]\ndpi = 90\n", encoding="utf-8")
    cfg = parse_args(["--ui-config", str(f), "--diagonal", "15"])
    assert (cfg.dpi, cfg.diagonal_in) == (None, 15.0)
    f.write_text("[ui]\ndpi = 90\ndiagonal_in = 19\n", encoding="utf-8")
    with pytest.raises(UiConfigError, match="not both"):
        parse_args(["--ui-config", str(f)])
    for bad in ("2", "150"):
        with pytest.raises(UiConfigError, match="diagonal"):
            parse_args(["--diagonal", bad])


def test_layout_zoom_keeps_targets_at_15_mm(window):
    from ui import theme
    from ui.config import PANELS

    for p in PANELS:
        zoom = theme.scale_for(p.width, p.height, p.dpi)
        assert theme.MIN_SCALE <= zoom <= 1.0, p
        assert theme.TOUCH_MIN * zoom >= theme.TOUCH_FLOOR - 1e-9, p  # real mm on the panel
        assert not theme.too_small(p.width, p.height, p.dpi), p
    # the big panels keep the full design size; the old small ones are zoomed down
    by_name = {(p.name, p.diagonal_in): theme.scale_for(p.width, p.height, p.dpi)
               for p in PANELS}
    assert by_name[("1280x1024", 17.0)] == by_name[("1920x1080", 21.5)] == 1.0
    assert by_name[("1080x1920", 21.5)] == 1.0
    assert theme.MIN_SCALE <= by_name[("800x600", 12.1)] < 0.8
    assert theme.MIN_SCALE < by_name[("1024x768", 15.0)] < 1.0
    # a 10.4" 800x600 (96 DPI) is below what 15 mm targets allow: the UI logs it
    assert theme.too_small(800, 600, 96.0)


def test_the_ui_table_is_read_with_types_ranges_and_paths(tmp_path) -> None:
    """The [ui] table goes through the shared reader (drivers/fieldspec.py): a wrong type
    or value names its dotted key instead of surfacing later as a crash in Kivy."""
    f = tmp_path / "ui.toml"
    for body, words in [
        ('[ui]\nwidth = "wide"\n', r"key 'ui\.width' must be a width in pixels > 0"),
        ("[ui]\nheight = 0\n", r"key 'ui\.height' must be a height in pixels > 0"),
        ("[ui]\nfullscreen = 1\n", r"key 'ui\.fullscreen' must be"),
        ('[ui]\nlang = "de"\n', r"key 'ui\.lang' must be one of ru, en"),
        ("[ui]\nretry_s = 0\n", r"key 'ui\.retry_s' must be a number of seconds > 0"),
        ("[ui]\ndpi = 10\n", r"key 'ui\.dpi' must be the screen's real DPI"),
        ("ui = 3\n", r"key 'ui' must be a table"),
    ]:
        f.write_text(body, encoding="utf-8")
        with pytest.raises(UiConfigError, match=words):
            parse_args(["--ui-config", str(f)])
    f.write_text('[ui]\nwidth = 1024\nheight = 768\nretry_s = 2\nlang = "en"\n',
                 encoding="utf-8")
    cfg = parse_args(["--ui-config", str(f)])
    assert (cfg.width, cfg.height, cfg.retry_s, cfg.lang) == (1024, 768, 2.0, "en")
