"""Configuration: defaults for the demo, and clear errors that name file, key, expectation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.config import ConfigError, load_config
from kiosk.pin import verify_pin


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "kiosk.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_need_no_file():
    config = load_config(None)
    assert config.terminal.id == "T0001"
    assert config.acceptor.kind == "virtual"
    assert verify_pin("1234", config.technician.pin_hash)
    assert config.catalog.get("mts") is not None


def test_full_file_is_loaded(tmp_path):
    path = write(
        tmp_path,
        """
[terminal]
id = "MSK-0042"
support_phone = "+7 495 123-45-67"
[paths]
data_dir = "state"
[acceptor]
kind = "ccnet"
port = "/dev/ttyUSB0"
[timeouts]
account = 90
[catalog]
categories = [{id = "mobile", name_ru = "Связь", name_en = "Mobile"}]
[[catalog.providers]]
id = "op"
name_ru = "Оператор"
name_en = "Operator"
category = "mobile"
account_mask = "+7 (***) ***-**-**"
account_pattern = "9\\\\d{9}"
min_minor = 1000
max_minor = 1500000
bands = [{percent_bp = 250, min_minor = 500}]
""",
    )
    config = load_config(path)
    assert config.terminal.id == "MSK-0042"
    assert config.paths.data_dir == tmp_path / "state"
    assert config.acceptor.port == "/dev/ttyUSB0"
    assert config.timeouts.account == 90
    assert config.catalog.get("op").commission(100_000) == 2_500


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[terminal]\nid = 5\n", "key 'terminal.id' must be str, got 5"),
        ('[terminal]\nsupport_phone = "call us"\n', "key 'terminal.support_phone'"),
        ('[terminl]\nid = "x"\n', "key 'terminl' is not a known setting"),
        ('[terminal]\nidd = "x"\n', "key 'terminal.idd' is not a known setting"),
        ('[acceptor]\nkind = "coin"\n', "key 'acceptor.kind' must be one of"),
        ('[acceptor]\nkind = "ccnet"\n', "key 'acceptor.port' is required"),
        ("[timeouts]\naccount = -5\n", "key 'timeouts.account' must be a positive integer"),
        ("[timeouts]\naccount = true\n", "key 'timeouts.account' must be a positive integer"),
        ('[technician]\npin_hash = "1234"\n', "key 'technician.pin_hash' must be an scrypt"),
        ('[printer]\nunavailable_policy = "ignore"\n', "key 'printer.unavailable_policy'"),
        ("terminal = 3\n", "'terminal' must be a table"),
        ("[terminal\n", "not valid TOML"),
        ('[catalog]\nproviders = [{id = "x"}]\n', "key 'catalog.providers[0].name_ru' is required"),
        (
            '[catalog]\ncategories = []\nproviders = [{id="x", name_ru="X", name_en="X", '
            'category="c", account_mask="***", account_pattern="\\\\d{3}", min_minor=1, '
            "max_minor=2}]\n",
            "unknown category",
        ),
    ],
)
def test_bad_file_names_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(path) in str(exc.value)
    assert expected in str(exc.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_cli_run_with_bad_config_exits_with_clear_message(tmp_path):
    path = write(tmp_path, "[terminal]\nsupport_phone = 12\n")
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "bad configuration" in result.stderr
    assert "terminal.support_phone" in result.stderr
    assert "Traceback" not in result.stderr


def test_shipped_example_config_is_valid():
    config = load_config(Path(__file__).resolve().parents[2] / "config.example.toml")
    assert config.acceptor.kind == "ccnet" and config.printer.profile == "custom_vkp80iii"
    assert config.technician.pin_hash == ""  # no default PIN on a real terminal


def test_cli_run_with_unusable_data_directory_exits_with_clear_message(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    path = write(
        tmp_path, f'[paths]\ndata_dir = "{blocker / "data"}"\nruntime_dir = "{tmp_path / "run"}"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "kiosk", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot start: cannot create the data directory" in result.stderr
    assert "Traceback" not in result.stderr
