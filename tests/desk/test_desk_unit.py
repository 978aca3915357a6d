"""The shipped systemd template for desk workers (deploy/systemd/kiosk-desk@.service)
verifies, and its ExecStart is a command line the desk accepts."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from sync.cli import desk_main

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "kiosk-desk@.service"
INSTALLED_KIOSK = "/opt/kiosk-agent/venv/bin/kiosk"


def test_the_desk_worker_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (Debian package systemd; scripts/system-deps.sh)"
    kiosk = tmp_path / "venv" / "bin" / "kiosk"
    kiosk.parent.mkdir(parents=True)
    kiosk.symlink_to(ROOT / ".venv" / "bin" / "kiosk")
    env = tmp_path / "desk.env"
    env.write_text("KIOSK_DESK_DB=/var/lib/kiosk-desk/desk.sqlite\nKIOSK_DESK_OPTS=\n")
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_KIOSK in text and "EnvironmentFile=/etc/kiosk/desk.env" in text
    unit = tmp_path / "kiosk-desk@8080.service"
    unit.write_text(text.replace(INSTALLED_KIOSK, str(kiosk))
                    .replace("/etc/kiosk/desk.env", str(env)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_its_command_line_is_one_the_desk_parses(capsys):
    """The subcommand and every option in ExecStart (KIOSK_DESK_OPTS empty, instance
    8080) are the desk's own: the serve help, reached through them, names each option."""
    line = next(x for x in UNIT.read_text(encoding="utf-8").splitlines()
                if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv[:2] == [INSTALLED_KIOSK, "desk"]
    args = [a.replace("%i", "8080") for a in argv[2:]
            if a not in ("$KIOSK_DESK_OPTS", "$KIOSK_DESK_WORKER_OPTS")]
    try:
        desk_main([*args, "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "--status" in out  # the serve subcommand's help, not the top level
    options = [a for a in args if a.startswith("--")]
    assert options and all(o in out for o in options), (options, out)


def test_a_partitioned_worker_s_options_go_before_serve(capsys):
    """KIOSK_DESK_WORKER_OPTS (the per-instance file the header shows) sits before
    `serve`: --partition and --takeover-after are the desk's top-level options."""
    text = UNIT.read_text(encoding="utf-8")
    assert "EnvironmentFile=-/etc/kiosk/desk-%i.env" in text
    example = next(x for x in text.splitlines() if "KIOSK_DESK_WORKER_OPTS=" in x)
    worker_opts = shlex.split(example.split("=", 1)[1])
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    at = argv.index("$KIOSK_DESK_WORKER_OPTS")
    assert argv[at + 1] == "serve"
    try:
        desk_main(["--db", "x.sqlite", *worker_opts, "serve", "--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "--status" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        desk_main(["--takeover-after", "soon", "serve", "--help"])
    assert bad.value.code == 2
