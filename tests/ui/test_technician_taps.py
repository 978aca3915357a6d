"""A technician's tap lands even when a status reply arrives between finger down and up.

The technician page used to be built again on every status reply (and every snapshot),
so a touch that went down on one page's button and came up on the next page's did
nothing. The page is now replaced only when what it shows changed. The real core and the
UI under Xvfb; a status reply is applied (and the page updated, as every snapshot does)
right before the finger's touch is dispatched, as when a reply and a tap meet in one
frame.
"""

from __future__ import annotations

from typing import Any

import pytest

PIN = "1234"  # the demo PIN whose hash tests/core/daemon.py writes
TAPS = 5


@pytest.mark.slow  # 10-20 s on a loaded 2-core machine
def test_taps_during_status_refreshes_all_land(terminal_factory: Any, make_ui: Any) -> None:
    from kivy.base import EventLoop

    from tests.ui.harness import Finger

    term = terminal_factory()
    d = make_ui(term)
    d.on("idle", timeout=20)
    d.ui.tech.enter()
    d.on("tech_pin")
    d.type_keys("tech.key", PIN)
    d.tap("tech.login")
    d.on("tech")
    d.tap("tech.tab.actions")
    d.until(lambda: d.visible("tech.restart") and not d.find("tech.restart").disabled)
    screen = d.ui.screens["tech"]
    for _ in range(TAPS):
        button = d.find("tech.restart")
        x, y = button.to_window(*button.center)
        # A status reply (or any snapshot) arrives and is applied on the main thread just
        # before the finger's touch is dispatched: the page must still be there.
        before = screen.status
        screen.refresh()
        d.until(lambda b=before: screen.status is not b, 10, "the status reply")
        screen.update()  # what render() does for every snapshot while the page is shown
        finger = Finger(x, y)
        EventLoop.post_dispatch_input("begin", finger)
        EventLoop.post_dispatch_input("end", finger)
        d.pump(0.05)
        assert d.visible("tech.restart_confirm"), "the tap on Restart was lost"
        d.tap("tech.restart_no")
        d.until(lambda: not d.visible("tech.restart_confirm"), 5, "the question closed")
    assert term.core.proc is not None and term.core.proc.poll() is None  # nothing restarted
