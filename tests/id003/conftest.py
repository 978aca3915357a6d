"""Fixtures for the ID-003 tests: a fast firmware profile, the simulator on a pty, a driver.

Everything runs over a real pseudo-terminal with real ID-003 bytes; only the timing is
shortened (a test profile). The fixtures themselves are tests/acceptor_fixtures.py's,
shared with the CCNET suite; this file says which protocol they run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.id003.device import Id003Acceptor
from drivers.sim.id003 import Id003Simulator
from drivers.sim.id003_model import SimTiming
from tests import acceptor_fixtures
from tests.acceptor_fixtures import *  # noqa: F403  (the shared fixtures)
from tests.acceptor_fixtures import AcceptorKit, fast_profile_text

PROFILE_NAME = "test_fast_id003"
FAST_PROFILE = fast_profile_text(PROFILE_NAME, "id003", parity="even", pattern="^U\\\\(",
                                 extra="\n[id003]\nstack = 1\npower_recovery = true\n")

SIM_TIMING = SimTiming(init_s=0.05, accept_s=0.03, stack_s=0.03, stacked_s=0.02,
                       return_s=0.03, reject_s=0.05)


def write_profile(folder: Path, name: str = PROFILE_NAME, **replace: str) -> Path:
    """The fast profile under another name, with textual replacements (old → new)."""
    text = FAST_PROFILE.replace(f'name = "{PROFILE_NAME}"', f'name = "{name}"')
    return acceptor_fixtures.write_profile(folder, text, name, **replace)


KIT = AcceptorKit(
    simulator=Id003Simulator,
    tty="ttyID003",
    sim_timing=SIM_TIMING,
    acceptor=Id003Acceptor,
    profile_text=FAST_PROFILE,
    profile_name=PROFILE_NAME,
    acceptor_defaults=lambda tmp: {"stack_marker": tmp / "stack-marker.json"},
)


@pytest.fixture
def kit() -> AcceptorKit:
    return KIT
