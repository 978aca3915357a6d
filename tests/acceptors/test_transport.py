"""The serial transport: what `drivers.transport.open_port` promises every driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers import transport
from drivers.profiles import SerialSettings
from drivers.transport import PseudoTerminal, open_port, open_pty

EVEN_PARITY = SerialSettings(9600, 8, "E", 1)  # ID-003's 8E1


@pytest.fixture
def pty() -> Iterator[PseudoTerminal]:
    pair = open_pty()
    yield pair
    pair.close()


def test_a_pty_opens_at_8e1_again_and_again(pty: PseudoTerminal) -> None:
    """A pty has no parity bit; the kernel refuses the second 8E1 open of the same pty.
    The transport opens it (as 8N1) every time, for any protocol and any opener."""
    for _ in range(3):
        port = open_port(pty.path, EVEN_PARITY)
        assert port.is_open
        port.close()


def test_a_missing_port_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot open serial port"):
        open_port(str(tmp_path / "ttyNONE"), EVEN_PARITY)


def test_only_a_pty_is_a_pty(pty: PseudoTerminal, tmp_path: Path) -> None:
    assert transport.is_pty(pty.path)
    assert not transport.is_pty(str(tmp_path))
    assert not transport.is_pty("loop://")
