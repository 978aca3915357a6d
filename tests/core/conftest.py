"""Fixtures of the engine tests: a terminal (engine, ledger, doubles) on a manual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kiosk.config import Config
from tests.conftest import ManualClock
from tests.core.harness import Terminal, make_terminal


@pytest.fixture
def term(config: Config, clock: ManualClock) -> Iterator[Terminal]:
    t = make_terminal(config, clock)
    yield t
    t.engine.stop()
