"""Fixtures for the CCNET tests: a fast firmware profile, the simulator on a pty, a driver.

Everything runs over a real pseudo-terminal with real CCNET bytes; only the timing is
shortened (a test profile). The fixtures themselves are tests/acceptor_fixtures.py's,
shared with the ID-003 suite; this file says which protocol they run.
"""

from __future__ import annotations

import pytest

from drivers.ccnet.device import CcnetAcceptor
from drivers.sim.ccnet import CcnetSimulator
from drivers.sim.ccnet_model import SimTiming
from tests.acceptor_fixtures import *  # noqa: F403  (the shared fixtures)
from tests.acceptor_fixtures import AcceptorKit, fast_profile_text

PROFILE_NAME = "test_fast_ccnet"
FAST_PROFILE = fast_profile_text(PROFILE_NAME, "ccnet", parity="none", pattern="^SM-")

SIM_TIMING = SimTiming(init_s=0.05, accept_s=0.03, stack_s=0.03, return_s=0.03, reject_s=0.05)

KIT = AcceptorKit(
    simulator=CcnetSimulator,
    tty="ttyCCNET",
    sim_timing=SIM_TIMING,
    acceptor=CcnetAcceptor,
    profile_text=FAST_PROFILE,
    profile_name=PROFILE_NAME,
)


@pytest.fixture
def kit() -> AcceptorKit:
    return KIT
