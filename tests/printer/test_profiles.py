"""Every printer profile loads and validates; broken ones name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.escpos.commands import CutMode
from drivers.escpos.settings import PresenterKind, PrinterSettings
from drivers.profiles import DEFAULT_DIR, ProfileError, find_profile, load_profile

EXPECTED = {
    # name: (columns, ESC t number for CP866, full status)
    "custom_vkp80iii": (42, 17, True),
    "custom_tg2480h": (44, 17, True),
    "citizen_ppu700": (48, 7, False),
    "epson_tmt88": (42, 17, False),
    "generic_58mm": (32, 7, False),
}


def test_every_printer_profile_loads(printer_profiles) -> None:
    files = sorted(DEFAULT_DIR.glob("printer_*.toml"))
    assert len(files) == len(EXPECTED)
    for path in files:
        profile = load_profile(path)
        assert profile.kind == "printer" and profile.protocol == "escpos"
        settings = PrinterSettings.from_profile(profile)
        columns, codepage, full = EXPECTED[profile.name]
        assert (settings.columns, settings.codepage_number, settings.full_status) == (
            columns,
            codepage,
            full,
        )
        assert settings.status_timeout_ms <= 500
        assert profile.name in printer_profiles


def test_vkp80iii_presenter(printer_profiles) -> None:
    s = PrinterSettings.from_profile(printer_profiles["custom_vkp80iii"])
    assert s.presenter.kind is PresenterKind.CUSTOM_FS_P
    assert s.cut is CutMode.FULL


@pytest.mark.parametrize(
    ("ident", "name"),
    [
        ("CUSTOM VKP80III", "custom_vkp80iii"),
        ("Custom TG2480H", "custom_tg2480h"),
        ("CITIZEN PPU-700II", "citizen_ppu700"),
        ("EPSON TM-T88V", "epson_tmt88"),
        ("Xprinter XP-58", "generic_58mm"),
    ],
)
def test_identification(printer_profiles, ident: str, name: str) -> None:
    assert find_profile(printer_profiles, "printer", "escpos", ident).name == name


GOOD = """
[profile]
name = "t"
kind = "printer"
protocol = "escpos"
[serial]
baudrate = 9600
bytesize = 8
parity = "none"
stopbits = 1
[identify]
patterns = ["t"]
[printer]
columns = 42
codepage_number = 17
cut = "full"
qr = true
full_status = false
status_timeout_ms = 200
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "printer_t.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_profile_gets_defaults(tmp_path: Path) -> None:
    s = PrinterSettings.from_profile(load_profile(_write(tmp_path, GOOD)))
    assert s.presenter.kind is PresenterKind.NONE
    assert s.feed_before_cut == 4 and s.qr_module_size == 6 and not s.realtime_clear


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("columns = 42", "columns = 4"), "printer.columns"),
        (("columns = 42", 'columns = "wide"'), "printer.columns"),
        (("codepage_number = 17", "codepage_number = 300"), "printer.codepage_number"),
        (("codepage_number = 17\n", ""), "printer.codepage_number"),
        (('cut = "full"', 'cut = "saw"'), "printer.cut"),
        (("qr = true", "qr = 1"), "printer.qr"),
        (("status_timeout_ms = 200", "status_timeout_ms = 0"), "printer.status_timeout_ms"),
        (
            ("status_timeout_ms = 200", 'status_timeout_ms = 200\nqr_error_level = "Z"'),
            "printer.qr_error_level",
        ),
        (
            (
                "status_timeout_ms = 200",
                'status_timeout_ms = 200\n[printer.presenter]\nkind = "robot"',
            ),
            "printer.presenter.kind",
        ),
        (
            (
                "status_timeout_ms = 200",
                'status_timeout_ms = 200\n[printer.presenter]\nkind = "citizen_gs_r"\n'
                "timeout_s = 30",
            ),
            "printer.presenter.timeout_s",
        ),
        (('kind = "printer"', 'kind = "acceptor"'), "printer"),
    ],
)
def test_bad_printer_section_names_file_and_key(tmp_path: Path, change, key: str) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ProfileError) as info:
        PrinterSettings.from_profile(load_profile(path))
    assert str(path) in str(info.value)
    assert key in str(info.value)
