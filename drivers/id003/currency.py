"""Currency assignment (0x8A) → denomination map, and the denomination inhibit mask (0xC0).

A CURRENCY ASSIGN reply carries 4 bytes per escrow code: `escrow code | country number |
base | exponent`, value = base × 10^exponent in whole currency units (lamassu
`id003rs232.js`, Aristocrat Monaco `Id003Protocol.cs`) [V]. An unassigned code has base 0.
The real-device capture in docs/protocols/id003.md
(`FC 25 8A 61 00 00 00 62 E0 05 00 … 68 E0 32 01 05 C1`) is a euro unit: country 0xE0
(224, "European Union" in Aristocrat's table), 500 = 50 × 10^1.
Its elided middle is recovered by its CRC: only the two-significant-digit encoding used
by `CurrencyRecord.for_value` (10 = 0A×10^0, 100 = 0A×10^1) gives `05 C1` [V by CRC].

The country number is JCM's own (spec appendix E, not ISO 3166); `COUNTRY_CURRENCY` is the
part of Aristocrat's table a kiosk fleet may meet [S]. A number not in it needs the
profile's `[id003] currency`; without one the denomination is not usable.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from drivers.acceptor import Bill
from drivers.ccnet.billtable import DEFAULT_MINOR_DIGITS, MINOR_DIGITS
from drivers.id003.protocol import CURRENCY_RECORD_LEN, DENOMINATION_MASK_LEN
from drivers.id003.states import DENOMINATION_CODES

COUNTRY_CURRENCY: dict[int, str] = {
    1: "USD", 27: "USD", 46: "USD",
    2: "AUD",
    5: "SEK",
    6: "ZAR",
    7: "NOK",
    8: "CAD", 72: "CAD",
    9: "MXN",
    10: "JPY",
    12: "BRL",
    22: "CHF",
    23: "GBP", 62: "GBP",
    26: "PLN",
    39: "RUB",
    44: "CZK",
    45: "CNY",
    48: "HUF",
    81: "KZT",
    224: "EUR",
}
"""JCM country number → ISO 4217 (Aristocrat Monaco, "spec Appendix E") [S]. Partial."""

CURRENCY_COUNTRY: dict[str, int] = {}
for _number, _code in COUNTRY_CURRENCY.items():
    CURRENCY_COUNTRY.setdefault(_code, _number)
"""ISO 4217 → the first country number that names it (the simulator's encoding)."""

_BYTE = 0xFF
_DECIMAL = 10
_TWO_DIGITS = 100
_BITS = 8


@dataclass(frozen=True)
class CurrencyRecord:
    """One escrow code's assignment, as sent on the wire."""

    escrow_code: int
    country: int
    base: int
    exponent: int

    @property
    def value(self) -> int:
        """Whole currency units (0 for an unassigned code)."""
        return self.base * _DECIMAL**self.exponent

    def currency(self, fallback: str | None = None) -> str | None:
        return COUNTRY_CURRENCY.get(self.country, fallback)

    def to_bill(self, fallback_currency: str | None = None) -> Bill | None:
        """The code as a `Bill` in minor units, or None if unassigned or unnamed."""
        currency = self.currency(fallback_currency)
        if self.base == 0 or currency is None or self.escrow_code not in DENOMINATION_CODES:
            return None
        digits = MINOR_DIGITS.get(currency, DEFAULT_MINOR_DIGITS)
        return Bill(self.value * _DECIMAL**digits, currency, self.escrow_code)

    def encode(self) -> bytes:
        return bytes((self.escrow_code, self.country, self.base, self.exponent))

    @classmethod
    def decode(cls, raw: bytes) -> CurrencyRecord:
        return cls(raw[0], raw[1], raw[2], raw[3])

    @classmethod
    def for_value(cls, escrow_code: int, value: int, country: int) -> CurrencyRecord:
        """Two significant digits where the value allows (500 = 50 × 10^1), as the real
        unit in the captured reply encodes it."""
        if value <= 0:
            raise ValueError(f"bill value must be positive, got {value}")
        exponent = 0
        while value % _DECIMAL == 0 and (value >= _TWO_DIGITS or value > _BYTE):
            value //= _DECIMAL
            exponent += 1
        if value > _BYTE:
            raise ValueError(f"bill value cannot be encoded as one byte × 10^n: {value}")
        return cls(escrow_code, country, value, exponent)

    @classmethod
    def empty(cls, escrow_code: int) -> CurrencyRecord:
        return cls(escrow_code, 0, 0, 0)


def decode_currency_table(data: bytes) -> tuple[CurrencyRecord, ...]:
    """All records; `data` must be a whole number of 4-byte records (checked by the parser)."""
    if len(data) % CURRENCY_RECORD_LEN:
        raise ValueError(f"currency table of {len(data)} bytes is not whole records")
    return tuple(
        CurrencyRecord.decode(data[i : i + CURRENCY_RECORD_LEN])
        for i in range(0, len(data), CURRENCY_RECORD_LEN)
    )


def encode_currency_table(records: Sequence[CurrencyRecord]) -> bytes:
    """One record per escrow code 0x61-0x68, in order; codes missing are unassigned."""
    by_code = {r.escrow_code: r for r in records}
    return b"".join(
        by_code.get(code, CurrencyRecord.empty(code)).encode() for code in DENOMINATION_CODES
    )


def bills_of(records: Iterable[CurrencyRecord], fallback_currency: str | None = None
             ) -> tuple[Bill, ...]:
    return tuple(b for b in (r.to_bill(fallback_currency) for r in records) if b is not None)


def unknown_country_hint(countries: Sequence[int]) -> str:
    """For a technician: denominations this driver cannot name, and the fix ("" if none)."""
    if not countries:
        return ""
    numbers = ", ".join(str(c) for c in countries)
    return (f"; its denominations carry JCM country number {numbers}, unknown to this "
            f"driver: set [id003] currency (e.g. \"RUB\") in the firmware profile")


def encode_inhibit_mask(enabled_codes: Iterable[int]) -> bytes:
    """ENABLE/DISABLE data: bit n of the first byte inhibits escrow code 0x61+n when set;
    the second byte is reserved and sent as 0x00 (py-id003) [S]. "Enable all" is 00 00."""
    enabled = set(enabled_codes)
    for code in enabled:
        if code not in DENOMINATION_CODES:
            raise ValueError(f"escrow code out of range: 0x{code:02X}")
    first = 0
    for bit, code in enumerate(DENOMINATION_CODES):
        if code not in enabled:
            first |= 1 << bit
    return bytes((first,)) + bytes(DENOMINATION_MASK_LEN - 1)


def decode_inhibit_mask(raw: bytes) -> frozenset[int]:
    """The escrow codes the mask inhibits (first byte only)."""
    first = raw[0] if raw else 0
    return frozenset(
        code for bit, code in enumerate(DENOMINATION_CODES[:_BITS]) if first >> bit & 1
    )


def codes_for(bills: Mapping[int, Bill], amounts_minor: Iterable[int],
              currency: str | None = None) -> frozenset[int]:
    """Escrow codes whose bill is one of `amounts_minor` (and of `currency`, if given)."""
    wanted = frozenset(amounts_minor)
    return frozenset(
        code for code, bill in bills.items()
        if bill.amount_minor in wanted and (currency is None or bill.currency == currency)
    )
