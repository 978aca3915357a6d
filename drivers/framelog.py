"""Raw frame log: every byte on the line, hex, direction and time, rotated and bounded.

These logs are the only evidence in a payment dispute (docs/protocols/ccnet.md,
"Link rules"), so they
are written for every frame, but they must never fill the disk: size-rotated files.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
DEFAULT_BACKUPS = 5


class FrameLog:
    def __init__(
        self,
        device: str,
        path: Path | None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
    ) -> None:
        self._logger = logging.getLogger(f"kiosk.frames.{device}")
        self._logger.propagate = False
        self._logger.setLevel(logging.DEBUG)
        self._handler: logging.Handler | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backups, encoding="ascii"
            )
            handler.setFormatter(
                logging.Formatter("%(asctime)s.%(msecs)03d %(message)s", "%Y-%m-%dT%H:%M:%S")
            )
            self._logger.addHandler(handler)
            self._handler = handler

    def tx(self, data: bytes) -> None:
        if self._handler is not None:
            self._logger.debug("TX %s", data.hex(" "))

    def rx(self, data: bytes, note: str = "") -> None:
        if self._handler is not None:
            self._logger.debug("RX %s%s", data.hex(" "), f" ({note})" if note else "")

    def close(self) -> None:
        if self._handler is not None:
            self._logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
