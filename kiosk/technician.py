"""Technician access: PIN check with lockout, and sessions that expire when left alone.

The socket is not a way in (docs/technician.md): every technician operation needs a token from a
PIN login; five wrong PINs lock the mode for five minutes (configurable) and the engine
reports the attempt to the desk. The failure count and the lockout are kept in a small
state file (wall-clock time), so restarting the core does not lift a lockout.

Sessions are per channel (the touchscreen, the shell): a technician who logs in with
`kiosk diag` on the shell does not end the session of the one at the screen, and each
logs out only their own. The failure count and the lockout are one for all channels (and
for the offline `kiosk ledger init`, which reads the same state file), so guessing PINs
on two channels at once still meets the one lockout.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kiosk.coded_error import CodedError
from kiosk.config import TechnicianConfig
from kiosk.durable_file import replace_file
from kiosk.pin import verify_pin

log = logging.getLogger("kiosk.technician")

LOCKOUT_FILE = "technician-lockout.json"
LOCKOUT_STATE_MODE = 0o600  # the owner only: it says when the next PIN try is allowed


class TechnicianAuthError(CodedError):
    """A PIN or token refused (no_pin, wrong_pin, locked, not_authorized, session_expired);
    `data` carries `attempts_left` (wrong_pin) or `retry_after_s` (locked) for the UI's
    own words."""


class Channel(enum.Enum):
    """Where a technician logs in from: each channel has its own session."""

    SCREEN = "screen"  # the touchscreen's technician mode (kiosk ui)
    SHELL = "shell"  # kiosk diag, kiosk ledger init on the terminal's shell


@dataclass
class _Session:
    token: str
    last_used: float


class TechnicianAccess:
    def __init__(
        self,
        config: TechnicianConfig,
        clock: Callable[[], float],
        state_path: Path | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._pin_hash = config.pin_hash
        self._clock = clock
        self._wall = wall
        self._state_path = state_path
        self._failures = 0
        self._locked_until = 0.0
        self._sessions: dict[Channel, _Session] = {}
        self._load()

    def _load(self) -> None:
        """Failures and a lockout from before a restart. Unreadable state: log it and keep
        the lockout conservative (a damaged file must not open the door)."""
        path = self._state_path
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            failures = int(data["failures"])
            until_wall = float(data["locked_until_wall"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("technician lockout state %s unreadable (%s): locking", path, exc)
            failures, until_wall = 0, self._wall() + self._config.lockout_s
        self._failures = max(0, failures)
        # Never longer than one lockout, whatever the wall clock did meanwhile.
        remaining = min(max(0.0, until_wall - self._wall()), float(self._config.lockout_s))
        self._locked_until = self._clock() + remaining if remaining > 0 else 0.0

    def _save(self) -> None:
        path = self._state_path
        if path is None:
            return
        remaining = self.locked_for()
        data = {
            "failures": self._failures,
            "locked_until_wall": self._wall() + remaining if remaining > 0 else 0.0,
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(path, json.dumps(data).encode(), LOCKOUT_STATE_MODE)
        except OSError as exc:  # the lockout still holds in memory
            log.warning("technician lockout state not saved to %s: %s", path, exc)

    def set_pin_hash(self, pin_hash: str) -> None:
        """A new PIN from the desk: every channel's session ends."""
        self._pin_hash = pin_hash
        self._sessions.clear()

    @property
    def failures(self) -> int:
        return self._failures

    def locked_for(self) -> float:
        return max(0.0, self._locked_until - self._clock())

    def _locked_error(self, remaining: float) -> TechnicianAuthError:
        retry = max(1, math.ceil(remaining))
        return TechnicianAuthError(
            "locked",
            f"too many wrong PINs; try again in {retry} s",
            {"retry_after_s": retry, "lockout_s": self._config.lockout_s},
        )

    def login(self, pin: str, channel: Channel = Channel.SHELL) -> str:
        """A new session on `channel` (replacing only that channel's); every wrong PIN,
        whatever the channel, counts towards the one lockout."""
        if not self._pin_hash:
            raise TechnicianAuthError("no_pin", "technician mode has no PIN configured")
        remaining = self.locked_for()
        if remaining > 0:
            raise self._locked_error(remaining)
        if not isinstance(pin, str) or not verify_pin(pin, self._pin_hash):
            self._failures += 1
            if self._failures >= self._config.max_attempts:
                self._failures = 0
                self._locked_until = self._clock() + self._config.lockout_s
                self._save()
                raise self._locked_error(self.locked_for())
            self._save()
            left = self._config.max_attempts - self._failures
            raise TechnicianAuthError(
                "wrong_pin",
                f"wrong PIN; {left} attempt(s) left",
                {"attempts_left": left, "max_attempts": self._config.max_attempts},
            )
        if self._failures:
            self._failures = 0
            self._save()
        session = _Session(secrets.token_hex(16), self._clock())
        self._sessions[channel] = session
        return session.token

    def _find(self, token: object) -> Channel | None:
        if not isinstance(token, str):
            return None
        found = None
        for channel, s in self._sessions.items():
            if secrets.compare_digest(s.token, token):
                found = channel
        return found

    def check(self, token: object) -> Channel:
        """The channel of the live session this token opened; refreshes its idle timer."""
        channel = self._find(token)
        if channel is None:
            raise TechnicianAuthError("not_authorized", "technician login required")
        s = self._sessions[channel]
        now = self._clock()
        if now - s.last_used > self._config.session_timeout_s:
            del self._sessions[channel]
            raise TechnicianAuthError("session_expired", "technician session expired; log in again")
        s.last_used = now
        return channel

    def logout(self, token: object) -> None:
        """End the session this token opened; other channels' sessions stay."""
        channel = self._find(token)
        if channel is not None:
            del self._sessions[channel]

    def active_channels(self) -> frozenset[Channel]:
        now = self._clock()
        return frozenset(
            c for c, s in self._sessions.items()
            if now - s.last_used <= self._config.session_timeout_s
        )

    @property
    def active(self) -> bool:
        return bool(self.active_channels())
