"""Shared fixtures: configurations in a temporary folder, and a manual clock."""

from __future__ import annotations

import dataclasses
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
