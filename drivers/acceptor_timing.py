"""Acceptor timing read from a firmware profile's [timing] section, validated once at start.

Both acceptor protocols poll, wait for a reply, retry, reset and initialize; the keys
(`poll_ms`, `response_timeout_ms`, `reset_wait_ms`, `stuck_state_s`, ...) mean the same
thing for both, so one reader serves `CcnetTiming` and `Id003Timing`. Every value the
driver waits on comes from here, so a test profile can run the whole protocol at pty
speed and a real profile at the device's pace. Errors name file and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from drivers.frame_link import LinkTiming
from drivers.profiles import Profile, ProfileError

_MS = 1000.0

TimingT = TypeVar("TimingT", bound="AcceptorTiming")


@dataclass(frozen=True)
class AcceptorTiming:
    poll_s: float  # poll period when no bill is moving
    active_poll_s: float  # poll period while a bill is in the path
    link: LinkTiming
    reset_wait_s: float  # quiet time after RESET before the first poll
    reset_poll_s: float  # poll period while the unit initializes
    init_timeout_s: float  # give up waiting for initialization (then report FAILURE)
    stuck_state_s: float  # accepting/stacking/returning/rejecting longer than this = jam
    escrow_hold_max_s: float  # a bill held longer than this is returned by the driver
    reconnect_s: float  # retry period while the port is gone or the device is silent

    @classmethod
    def from_profile(cls: type[TimingT], profile: Profile) -> TimingT:
        def ms(key: str, default: int | None = None, minimum: int = 0) -> float:
            value = profile.get(f"timing.{key}", int, default)
            if value < minimum:
                raise ProfileError(
                    f"{profile.path}: key 'timing.{key}' must be >= {minimum}, got {value}"
                )
            return value / _MS

        def seconds(key: str, default: float | None = None) -> float:
            value = profile.get(f"timing.{key}", float, default)
            if value <= 0:
                raise ProfileError(f"{profile.path}: key 'timing.{key}' must be > 0, got {value}")
            return value

        attempts = profile.get("timing.attempts", int, 3)
        if attempts < 1:
            raise ProfileError(f"{profile.path}: key 'timing.attempts' must be >= 1")
        poll_s = ms("poll_ms", minimum=1)
        return cls(
            poll_s=poll_s,
            active_poll_s=ms("active_poll_ms", round(poll_s * _MS), minimum=1),
            link=LinkTiming(
                response_timeout_s=ms("response_timeout_ms", minimum=1),
                ident_timeout_s=ms("ident_timeout_ms", minimum=1),
                attempts=attempts,
                settle_s=ms("bad_frame_settle_ms", 20),
                command_gap_s=ms("command_gap_ms", 20),
            ),
            reset_wait_s=ms("reset_wait_ms"),
            reset_poll_s=ms("reset_poll_ms", 100, minimum=1),
            init_timeout_s=seconds("init_timeout_s"),
            stuck_state_s=seconds("stuck_state_s"),
            escrow_hold_max_s=seconds("escrow_hold_max_s", 60.0),
            reconnect_s=ms("reconnect_ms", 1000, minimum=1),
        )
