"""`make demo` opens the touchscreen when a display is available (issue 8)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.slow  # 9-20 s on a loaded 2-core machine: not in make test-fast
def test_demo_shows_the_touchscreen_when_a_display_exists(xvfb, tmp_path):
    env = {**os.environ, "DISPLAY": xvfb}
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "touchscreen (kiosk ui) on this display" in result.stdout
    assert "touchscreen: running" in result.stdout  # it was up for the whole payment
    assert "demo finished" in result.stdout
    log = (tmp_path / "demo" / "ui.log").read_text()
    assert "Traceback" not in log
