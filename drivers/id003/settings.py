"""The [id003] section of a firmware profile: what the driver sets on the acceptor.

- `stack` = 1 or 2: STACK-1 (VEND VALID once the bill passes the stacker lever) or
  STACK-2 (VEND VALID once it is fully in the stacker), TerminalClient's comments [S].
- `power_recovery` (bool): set the OPTIONAL FUNCTION power-recovery bit (0x02, py-id003
  [S]) so a power-up with a bill in the stacker is followed by VEND VALID (CIM-ARM [S/U]).
- `currency`: ISO 4217 code for denominations whose JCM country number this driver does
  not know (`currency.COUNTRY_CURRENCY`); empty means such bills are never enabled.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers.id003.protocol import STACK_COMMANDS, Command
from drivers.profiles import Profile, ProfileError

_CURRENCY_LEN = 3


@dataclass(frozen=True)
class Id003Settings:
    stack_command: Command = Command.STACK_1
    power_recovery: bool = True
    currency: str | None = None

    @classmethod
    def from_profile(cls, profile: Profile) -> Id003Settings:
        stack = profile.get("id003.stack", int, 1)
        if stack not in STACK_COMMANDS:
            raise ProfileError(f"{profile.path}: key 'id003.stack' must be 1 or 2, got {stack}")
        recovery = profile.get("id003.power_recovery", bool, True)
        currency = profile.get("id003.currency", str, "") or None
        if currency is not None and (len(currency) != _CURRENCY_LEN or not currency.isalpha()
                                     or not currency.isupper()):
            raise ProfileError(f"{profile.path}: key 'id003.currency' must be an ISO 4217 "
                               f"code like \"RUB\", got {currency!r}")
        return cls(STACK_COMMANDS[stack], recovery, currency)
