"""kiosk/durable_file.py: the one fsync-a-file-and-its-folder helper (ledger marker, keys)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kiosk.durable_file import replace_file, write_file, write_new
from kiosk.ledger.identity import Marker, MarkerError, read_marker, write_marker


def test_marker_is_replaced_with_its_file_and_folder_fsynced(tmp_path: Path, synced) -> None:
    """M5: the marker that remembers issued numbers must survive a power cut."""
    path = tmp_path / "ledger.sqlite.identity"
    write_marker(path, Marker("T1", "a" * 32, 100, 1000, 5))
    write_marker(path, Marker("T1", "a" * 32, 200, 1000, 6))
    assert read_marker(path) == Marker("T1", "a" * 32, 200, 1000, 6)
    assert (True, str(tmp_path)) in synced
    assert (False, str(tmp_path / "ledger.sqlite.identity.tmp")) in synced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.sqlite.identity"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_failed_replace_keeps_the_old_content_and_no_temp_file(tmp_path: Path, mocker) -> None:
    path = tmp_path / "m"
    replace_file(path, b"old", 0o600)
    mocker.patch("kiosk.durable_file.os.fsync", side_effect=OSError(28, "No space left"))
    with pytest.raises(OSError):
        replace_file(path, b"new", 0o600)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_marker_write_failure_is_a_marker_error_naming_the_file(tmp_path: Path, mocker) -> None:
    mocker.patch("kiosk.durable_file.os.fsync", side_effect=OSError(5, "Input/output error"))
    with pytest.raises(MarkerError, match="Input/output error") as err:
        write_marker(tmp_path / "x.identity", Marker("T1", "b" * 32, 0, 0, 1))
    assert "x.identity" in str(err.value)


def test_write_new_never_overwrites(tmp_path: Path, synced) -> None:
    path = tmp_path / "key"
    write_new(path, b"secret", 0o600)
    with pytest.raises(FileExistsError):
        write_new(path, b"other", 0o600)
    assert path.read_bytes() == b"secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (True, str(tmp_path)) in synced and (False, str(path)) in synced


def test_a_short_write_is_completed(tmp_path: Path, mocker) -> None:
    """os.write may write less than asked (a signal, a full pipe): the rest follows."""
    real = os.write
    mocker.patch("kiosk.durable_file.os.write", side_effect=lambda fd, b: real(fd, bytes(b)[:3]))
    write_file(tmp_path / "pub", b"0123456789", 0o644)
    assert (tmp_path / "pub").read_bytes() == b"0123456789"


def test_technician_lockout_survives_a_power_cut(tmp_path: Path, synced) -> None:
    """The lockout after wrong PINs is on disk, name and all, before the answer: a power
    cut (or a restart) does not give a PIN guesser fresh attempts."""
    from kiosk.config import TechnicianConfig
    from kiosk.pin import hash_pin
    from kiosk.technician import LOCKOUT_FILE, TechnicianAccess, TechnicianAuthError

    config = TechnicianConfig(pin_hash=hash_pin("2468"), max_attempts=2, lockout_s=300)
    state = tmp_path / "state" / LOCKOUT_FILE
    clock = lambda: 1000.0  # noqa: E731 - a frozen clock
    access = TechnicianAccess(config, clock, state, wall=lambda: 1_700_000_000.0)
    for code in ("wrong_pin", "locked"):
        with pytest.raises(TechnicianAuthError) as err:
            access.login("0000")
        assert err.value.code == code
    assert (True, str(state.parent)) in synced and stat.S_IMODE(state.stat().st_mode) == 0o600
    again = TechnicianAccess(config, clock, state, wall=lambda: 1_700_000_000.0)
    with pytest.raises(TechnicianAuthError) as err:
        again.login("2468")  # the right PIN, but still locked out
    assert err.value.code == "locked"
