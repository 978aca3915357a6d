"""Bill types: the 24-record bill table and the 3-byte bill-type masks (ccnet.md, "Bill table").

A record is `mantissa | country[3] | exponent`: value = mantissa × 10^exponent, bit 7 of
the exponent byte marks a negative exponent (lamassu). The country field is a country
code ("RUS", "USA", "AZE") or "EUR"; the engine wants an ISO 4217 currency, so known
codes are mapped and an unknown one is passed through as is (it is still 3 letters).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from drivers.acceptor import Bill
from drivers.ccnet.protocol import BILL_RECORD_LEN, BILL_TABLE_LEN, BILL_TYPE_COUNT, MASK_LEN

NEGATIVE_EXPONENT = 0x80
_EXPONENT_MASK = 0x7F
_COUNTRY_LEN = 3
_MAX_MANTISSA = 0xFF
_DECIMAL = 10

COUNTRY_CURRENCY: dict[str, str] = {
    "RUS": "RUB",
    "USA": "USD",
    "EUR": "EUR",
    "AZE": "AZN",
    "KAZ": "KZT",
    "UKR": "UAH",
    "BLR": "BYN",
    "KGZ": "KGS",
    "UZB": "UZS",
    "TJK": "TJS",
    "ARM": "AMD",
    "GEO": "GEL",
    "MDA": "MDL",
}
"""Country field → ISO 4217 currency. Partial; extend when a new market needs it."""

MINOR_DIGITS: dict[str, int] = {"JPY": 0, "KRW": 0, "UZS": 2}
"""Currencies whose minor unit is not 1/100. Everything else is assumed to have 2 digits."""
DEFAULT_MINOR_DIGITS = 2


@dataclass(frozen=True)
class BillRecord:
    """One slot of the device's bill table, as sent on the wire."""

    bill_type: int
    mantissa: int
    country: str
    exponent: int  # signed power of ten

    @property
    def currency(self) -> str:
        return COUNTRY_CURRENCY.get(self.country, self.country)

    def to_bill(self) -> Bill | None:
        """The slot as a `Bill` in minor units, or None for an empty or unusable slot."""
        if self.mantissa == 0 or len(self.country) != _COUNTRY_LEN or not self.country.isalpha():
            return None
        shift = self.exponent + MINOR_DIGITS.get(self.currency, DEFAULT_MINOR_DIGITS)
        if shift < 0:
            return None  # below one minor unit: not a note we can credit
        return Bill(self.mantissa * _DECIMAL**shift, self.currency, self.bill_type)

    def encode(self) -> bytes:
        exp = self.exponent if self.exponent >= 0 else NEGATIVE_EXPONENT | -self.exponent
        country = self.country.encode("ascii", "replace")[:_COUNTRY_LEN].ljust(_COUNTRY_LEN)
        return bytes((self.mantissa,)) + country + bytes((exp,))

    @classmethod
    def decode(cls, bill_type: int, raw: bytes) -> BillRecord:
        exp_byte = raw[4]
        exponent = exp_byte & _EXPONENT_MASK
        if exp_byte & NEGATIVE_EXPONENT:
            exponent = -exponent
        country = raw[1:4].decode("ascii", "replace").strip("\x00 ")
        return cls(bill_type, raw[0], country, exponent)

    @classmethod
    def for_value(cls, bill_type: int, value: int, country: str) -> BillRecord:
        """Encode a whole-unit value (e.g. 5000) as mantissa × 10^exponent."""
        if value <= 0:
            raise ValueError(f"bill value must be positive, got {value}")
        exponent = 0
        while value > _MAX_MANTISSA or (value % _DECIMAL == 0 and value >= _DECIMAL):
            if value % _DECIMAL:
                raise ValueError(f"bill value {value} cannot be encoded as one byte × 10^n")
            value //= _DECIMAL
            exponent += 1
        return cls(bill_type, value, country, exponent)

    @classmethod
    def empty(cls, bill_type: int) -> BillRecord:
        return cls(bill_type, 0, "", 0)


def decode_bill_table(data: bytes) -> tuple[BillRecord, ...]:
    """All 24 records; `data` must be exactly 120 bytes (checked by the caller's parser)."""
    if len(data) != BILL_TABLE_LEN:
        raise ValueError(f"bill table must be {BILL_TABLE_LEN} bytes, got {len(data)}")
    return tuple(
        BillRecord.decode(i, data[i * BILL_RECORD_LEN : (i + 1) * BILL_RECORD_LEN])
        for i in range(BILL_TYPE_COUNT)
    )


def encode_bill_table(records: Sequence[BillRecord]) -> bytes:
    """120 bytes; slots missing from `records` are empty."""
    by_type = {r.bill_type: r for r in records}
    return b"".join(
        by_type.get(i, BillRecord.empty(i)).encode() for i in range(BILL_TYPE_COUNT)
    )


def bills_of(records: Iterable[BillRecord]) -> tuple[Bill, ...]:
    return tuple(b for b in (r.to_bill() for r in records) if b is not None)


def encode_mask(bill_types: Iterable[int]) -> bytes:
    """3-byte big-endian bitmap, bit n = bill type n (bit 0 of the last byte is type 0)."""
    value = 0
    for t in bill_types:
        if not 0 <= t < BILL_TYPE_COUNT:
            raise ValueError(f"bill type out of range: {t}")
        value |= 1 << t
    return value.to_bytes(MASK_LEN, "big")


def decode_mask(raw: bytes) -> frozenset[int]:
    value = int.from_bytes(raw[:MASK_LEN], "big")
    return frozenset(t for t in range(BILL_TYPE_COUNT) if value >> t & 1)
