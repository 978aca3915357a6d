"""Technician access: PIN check with lockout, and sessions that expire when left alone.

The socket is not a way in (DESIGN.md): every technician operation needs a token from a
PIN login; five wrong PINs lock the mode for five minutes (configurable) and the engine
reports the attempt to the desk.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from kiosk.config import TechnicianConfig
from kiosk.pin import verify_pin


class TechnicianAuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Session:
    token: str
    last_used: float


class TechnicianAccess:
    def __init__(self, config: TechnicianConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._pin_hash = config.pin_hash
        self._clock = clock
        self._failures = 0
        self._locked_until = 0.0
        self._session: _Session | None = None

    def set_pin_hash(self, pin_hash: str) -> None:
        """A new PIN from the desk: existing sessions end."""
        self._pin_hash = pin_hash
        self._session = None

    @property
    def failures(self) -> int:
        return self._failures

    def locked_for(self) -> float:
        return max(0.0, self._locked_until - self._clock())

    def login(self, pin: str) -> str:
        if not self._pin_hash:
            raise TechnicianAuthError("no_pin", "technician mode has no PIN configured")
        remaining = self.locked_for()
        if remaining > 0:
            raise TechnicianAuthError(
                "locked", f"too many wrong PINs; try again in {int(remaining) + 1} s"
            )
        if not isinstance(pin, str) or not verify_pin(pin, self._pin_hash):
            self._failures += 1
            if self._failures >= self._config.max_attempts:
                self._failures = 0
                self._locked_until = self._clock() + self._config.lockout_s
                raise TechnicianAuthError(
                    "locked", f"wrong PIN; technician mode locked for {self._config.lockout_s} s"
                )
            left = self._config.max_attempts - self._failures
            raise TechnicianAuthError("wrong_pin", f"wrong PIN; {left} attempt(s) left")
        self._failures = 0
        self._session = _Session(secrets.token_hex(16), self._clock())
        return self._session.token

    def check(self, token: object) -> None:
        s = self._session
        if s is None or not isinstance(token, str) or not secrets.compare_digest(s.token, token):
            raise TechnicianAuthError("not_authorized", "technician login required")
        now = self._clock()
        if now - s.last_used > self._config.session_timeout_s:
            self._session = None
            raise TechnicianAuthError("session_expired", "technician session expired; log in again")
        s.last_used = now

    def logout(self) -> None:
        self._session = None

    @property
    def active(self) -> bool:
        s = self._session
        return s is not None and self._clock() - s.last_used <= self._config.session_timeout_s
