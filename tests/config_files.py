"""One way tests (and benchmarks) write a core's config file.

The same shape as config.example.toml: a terminal, its paths inside the test's own
folder, the demo technician PIN, and whatever sections the test adds (devices, mqtt,
timeouts) as TOML text — so a test's configuration is a real file the core parses, never
an object built around the parser."""

from __future__ import annotations

from pathlib import Path

from kiosk.config import DEMO_PIN_HASH

TERMINAL_ID = "T0001"
SUPPORT_PHONE = "8 800 555-35-35"


def write_config(workdir: Path, sections: str = "", *, terminal_id: str = TERMINAL_ID,
                 support_phone: str = SUPPORT_PHONE, pin_hash: str = DEMO_PIN_HASH,
                 name: str = "kiosk.toml") -> Path:
    path = workdir / name
    path.write_text(
        f"""
[terminal]
id = "{terminal_id}"
support_phone = "{support_phone}"

[paths]
data_dir = "{workdir / "data"}"
runtime_dir = "{workdir / "run"}"
log_dir = "{workdir / "log"}"

[technician]
pin_hash = "{pin_hash}"
{sections}
""",
        encoding="utf-8",
    )
    return path
