"""Shared fixtures: configurations in a temporary folder, a manual clock, an fsync spy."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from kiosk.config import Config, PathsConfig, load_config


class ManualClock:
    """Time as an edge: tests move it instead of sleeping."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def config_in(tmp: Path, **sections: object) -> Config:
    """Demo defaults with every path under `tmp`; `sections` replace whole sections."""
    base = load_config(None)
    paths = PathsConfig(data_dir=tmp / "data", runtime_dir=tmp / "run", log_dir=tmp / "log")
    return dataclasses.replace(base, paths=paths, **sections)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return config_in(tmp_path)


@pytest.fixture
def synced(mocker) -> list[tuple[bool, str]]:
    """Every fsync through kiosk/durable_file.py: (is a folder, the path it was on)."""
    seen: list[tuple[bool, str]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        seen.append((stat.S_ISDIR(st.st_mode), os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    mocker.patch("kiosk.durable_file.os.fsync", side_effect=spy)
    return seen
