"""`python -m ui` / `kiosk ui`: the customer touchscreen in its own process.

Kivy reads its environment and configuration when first imported, so everything that
must be decided before the window exists (no Kivy argument parsing, the window size, the
physical DPI) is set here before any Kivy import.
"""

from __future__ import annotations

import logging
import os
import sys

from ui.config import UiConfig, UiConfigError, panel_dpi, parse_args


def prepare_kivy(cfg: UiConfig) -> None:
    """Environment and Config before the window: our flags are not Kivy's."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_NO_FILELOG", "1")
    # Kivy logs through its own handlers; it leaves the root logger and sys.stderr alone.
    os.environ.setdefault("KIVY_LOG_MODE", "MIXED")
    # A snapshot handed over from the link thread wakes the main loop at once instead of
    # waiting for the next frame tick.
    os.environ.setdefault("KIVY_CLOCK", "interrupt")
    from kivy.config import Config

    Config.set("graphics", "width", str(cfg.width))
    Config.set("graphics", "height", str(cfg.height))
    Config.set("graphics", "fullscreen", "auto" if cfg.fullscreen else "0")
    Config.set("graphics", "show_cursor", "0" if cfg.fullscreen else "1")
    Config.set("kivy", "exit_on_escape", "0")
    from ui import theme

    # a first guess from the configured size; KioskUi settles it on the real window
    theme.set_dpi(panel_dpi(cfg.width, cfg.height, cfg.dpi, cfg.diagonal_in))


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
    except UiConfigError as exc:
        print(f"kiosk ui: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prepare_kivy(cfg)
    from ui.app import KioskApp

    KioskApp(cfg).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
