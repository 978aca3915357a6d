"""The technician's session: the token, the inactivity timer and the refusal wording.

Kept apart from the technician screens (`ui.technician`) so that the UI starts without
building, or even importing, a page a technician may never open: the session is needed
from the start (the hidden gesture leads to it), the screens only when it is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kivy.clock import Clock

from ui.link import LinkError

if TYPE_CHECKING:
    from ui.controller import Controller

AUTH_ERRORS = ("not_authorized", "session_expired")
CHANNEL = "screen"  # the core keeps one technician session per channel (the shell has its own)
Words = Callable[[], str]  # a text worded at render time, in the language shown then
REFUSAL_KEYS = {
    "no_pin": "tech_no_pin",
    "unreachable": "tech_unreachable",
    "busy": "busy",
    "session_expired": "tech_expired",
    "not_authorized": "tech_expired",
    "ledger_unavailable": "tech_ledger_down",
    "internal": "tech_internal",
}


def refusal(t: Callable[..., str], error: LinkError) -> Words:
    """The core's refusal (code + data) in the technician's words; never its English
    message. The time a lockout ends is fixed when the refusal arrives."""
    code, data = error.code, error.data
    if code == "wrong_pin" and isinstance(data.get("attempts_left"), int):
        left = data["attempts_left"]
        return lambda: t("tech_wrong_pin_left", n=left)
    if code == "locked":
        retry = data.get("retry_after_s")
        wait = retry if isinstance(retry, int | float) else 0
        until = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
        return lambda: t("tech_locked_until", t=until)
    key = REFUSAL_KEYS.get(code)
    if key is not None:
        return lambda: t(key)
    if code == "bad_request":
        return lambda: t("tech_bad_request", code=code)
    return lambda: t("tech_refused", code=code)


class TechSession:
    """The token, the inactivity timer and the one place technician ops are sent from."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self.token: str | None = None
        self.last_touch = time.monotonic()
        self.note: Words | None = None  # shown on the PIN screen (wrong PIN, locked, expired)
        self._timer = Clock.schedule_interval(self._check_idle, 1.0)

    def close(self) -> None:
        self._timer.cancel()

    @property
    def active(self) -> bool:
        return self.ctl.local in ("tech_pin", "tech")

    def touched(self) -> None:
        self.last_touch = time.monotonic()

    @property
    def message(self) -> str:
        return self.note() if self.note is not None else ""

    def enter(self) -> None:
        self.note = None
        self.touched()
        self.ctl.show_local("tech_pin")

    def login(self, pin: str, done: Callable[[bool], None]) -> None:
        def reply(result: Any, error: LinkError | None) -> None:
            if error is None:
                self.token = result["token"]
                self.note = None
                self.touched()
                self.ctl.show_local("tech")
                done(True)
                return
            self.note = refusal(self.ctl.t, error)
            done(False)

        self.ctl.request("tech.login", reply, pin=pin, channel=CHANNEL)

    def call(self, op: str, done: Callable[[Any, LinkError | None], None],
             **fields: Any) -> None:
        """A technician op with the token; an expired session goes back to the PIN."""

        def reply(result: Any, error: LinkError | None) -> None:
            if error is not None and error.code in AUTH_ERRORS:
                self.token = None
                t = self.ctl.t
                self.note = lambda: t("tech_expired")
                if self.active:
                    self.ctl.show_local("tech_pin")
                return
            done(result, error)

        self.touched()
        self.ctl.request(op, reply, token=self.token or "", **fields)

    def leave(self) -> None:
        if self.token is not None:
            self.ctl.request("tech.logout")
        self.token = None
        self.note = None
        if self.active:
            self.ctl.close_local()

    def _check_idle(self, _dt: float) -> None:
        if self.active and time.monotonic() - self.last_touch > self.ctl.cfg.tech_idle_s:
            self.leave()
