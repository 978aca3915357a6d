"""systemd integration: the unit files verify, and the daemon speaks sd_notify (READY,
WATCHDOG from a healthy main loop only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.core.daemon import Core, write_config

ROOT = Path(__file__).resolve().parents[2]


def test_unit_files_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package systemd; scripts/system-deps.sh)"
    prefix, config = tmp_path / "opt", tmp_path / "etc" / "kiosk.toml"
    subprocess.run([ROOT / "scripts" / "install.sh", "--units-only", prefix, config], check=True)
    units = sorted((prefix / "systemd").glob("*.service"))
    assert [u.name for u in units] == ["kiosk-agent.service", "kiosk-ui.service"]
    text = units[0].read_text()
    assert f"ExecStart={prefix}/venv/bin/kiosk run --config {config}" in text
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "PrivateDevices=yes" not in text  # it would hide /dev/ttyUSB*
    # verify checks that ExecStart exists and is executable: give it the real entry point
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "kiosk").symlink_to(ROOT / ".venv" / "bin" / "kiosk")
    result = subprocess.run(
        [analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> list[str]:
        got: list[str] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append((time.monotonic(), data))
            got.append(data)
        return got


def test_ready_and_watchdog_pings_stop_when_the_loop_blocks(tmp_path, monkeypatch):
    notify = NotifySocket(tmp_path / "notify.sock")
    stall = tmp_path / "stall"
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # pings about every 0.2 s
    monkeypatch.setenv("KIOSK_FAULT_STALL_FILE", str(stall))
    core = Core(write_config(tmp_path), tmp_path)
    core.start()
    try:
        first = notify.collect(1.5)
        assert first and first[0].startswith("READY=1")
        assert sum(m == "WATCHDOG=1" for m in first) >= 3
        stall.touch()  # the main loop now blocks, as a hung loop would
        time.sleep(0.5)
        blocked = notify.collect(1.5)
        assert "WATCHDOG=1" not in blocked, blocked
        os.unlink(stall)
        resumed = notify.collect(1.5)
        assert resumed.count("WATCHDOG=1") >= 2
    finally:
        assert core.stop() == 0
    assert "STOPPING=1" in notify.collect(0.5) + [m for _, m in notify.messages]
