"""The shipped systemd template for desk workers (deploy/systemd/kiosk-desk@.service)
verifies, and its ExecStart is a command line the desk accepts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from sync.cli import desk_main
from tests.systemd_units import env_file_variables, exec_start_variables, verify_unit

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "kiosk-desk@.service"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "desk.env.example"
INSTALLED_KIOSK = "/opt/kiosk-agent/venv/bin/kiosk"
ENV_FILE = "/etc/kiosk/desk.env"


def test_the_desk_worker_unit_verifies(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_KIOSK in text and f"EnvironmentFile={ENV_FILE}" in text
    verified = verify_unit(tmp_path, UNIT, {INSTALLED_KIOSK: ROOT / ".venv" / "bin" / "kiosk"},
                           {ENV_FILE: ENV_EXAMPLE}, name="kiosk-desk@8080.service")
    result = verified.result
    assert result.returncode == 0, result.stdout + result.stderr
    assert INSTALLED_KIOSK not in verified.text and ENV_FILE not in verified.text
    # the shipped example gives every variable the command line takes, and the database
    # (the desk reads KIOSK_DESK_DB itself, so ExecStart does not name it)
    example = env_file_variables(ENV_EXAMPLE)
    used = exec_start_variables(text)
    assert used == {"KIOSK_DESK_OPTS", "KIOSK_DESK_WORKER_OPTS"} and used <= example.keys()
    assert example["KIOSK_DESK_DB"].startswith("postgresql://"), example


def test_its_command_line_is_one_the_desk_parses(
        capsys: pytest.CaptureFixture[str]) -> None:
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


def test_a_partitioned_worker_s_options_go_before_serve(
        capsys: pytest.CaptureFixture[str]) -> None:
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
