"""Providers, account masks, limits and commissions.

All money is integer minor units (kopecks). Commission rounding (docs/catalog.md):
  percent part = inserted × percent_bp / 10000, rounded half-up to a whole kopeck;
  fee = clamp(percent part + fixed, band minimum, band maximum);
  fee never exceeds the inserted amount (M9: no change is given, and credited ≥ 0).
Limits apply to the inserted cash (what the customer puts in), as the terminal shows them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

BASIS_POINTS = 10_000  # 100 % in basis points
MASK_SLOT = "*"  # a digit the customer types (Cyberplat operators.xsd convention)


class CatalogError(ValueError):
    """The catalog is inconsistent; the message names the provider and the field."""


@dataclass(frozen=True)
class CommissionBand:
    """Applies when from_minor <= inserted < to_minor (to_minor None = no upper bound)."""

    from_minor: int = 0
    to_minor: int | None = None
    percent_bp: int = 0
    fixed_minor: int = 0
    min_minor: int = 0
    max_minor: int | None = None

    def covers(self, inserted_minor: int) -> bool:
        return self.from_minor <= inserted_minor and (
            self.to_minor is None or inserted_minor < self.to_minor
        )

    def fee(self, inserted_minor: int) -> int:
        percent_part = (inserted_minor * self.percent_bp + BASIS_POINTS // 2) // BASIS_POINTS
        fee = max(percent_part + self.fixed_minor, self.min_minor)
        if self.max_minor is not None:
            fee = min(fee, self.max_minor)
        return fee


@dataclass(frozen=True)
class Provider:
    id: str
    name_ru: str
    name_en: str
    category: str
    account_mask: str  # "+7 (***) ***-**-**": each * is one typed digit
    account_pattern: str  # regex the typed digits must fully match
    min_minor: int
    max_minor: int
    bands: tuple[CommissionBand, ...] = field(default_factory=tuple)
    currency: str = "RUB"

    @property
    def account_length(self) -> int:
        return self.account_mask.count(MASK_SLOT)

    def validate_account(self, account: str) -> bool:
        return (
            len(account) == self.account_length
            and account.isascii()  # the desk and the provider take ASCII digits only
            and re.fullmatch(self.account_pattern, account, re.ASCII) is not None
        )

    def format_account(self, account: str) -> str:
        """The typed digits laid into the mask; untyped slots stay as '_'."""
        digits = iter(account)
        return "".join((next(digits, "_") if ch == MASK_SLOT else ch) for ch in self.account_mask)

    def commission(self, inserted_minor: int) -> int:
        if inserted_minor <= 0:
            return 0
        for band in self.bands:
            if band.covers(inserted_minor):
                return min(band.fee(inserted_minor), inserted_minor)
        return 0

    def credited(self, inserted_minor: int) -> int:
        return inserted_minor - self.commission(inserted_minor)

    def zero_credit_at(self) -> int | None:
        """The smallest allowed amount (min_minor..max_minor) whose whole sum the fee would
        take, or None when every allowed amount credits something.

        With percent_bp below 100 % the credit never falls when one kopeck more is
        inserted inside one band, so its lowest values in the limits are where the band in
        force changes: min_minor and the bands' bounds. Checking those points is exact."""
        points = {self.min_minor}
        for band in self.bands:
            points.update((band.from_minor, band.to_minor or band.from_minor))
        for amount in sorted(points):
            if self.min_minor <= amount <= self.max_minor and self.credited(amount) <= 0:
                return amount
        return None


@dataclass(frozen=True)
class Catalog:
    providers: tuple[Provider, ...]
    categories: tuple[tuple[str, str, str], ...]  # (id, name_ru, name_en)

    def get(self, provider_id: str) -> Provider | None:
        for p in self.providers:
            if p.id == provider_id:
                return p
        return None

    def validate(self) -> None:
        seen: set[str] = set()
        category_ids = {c[0] for c in self.categories}
        for p in self.providers:
            where = f"provider {p.id!r}"
            if p.id in seen:
                raise CatalogError(f"{where}: duplicate id")
            seen.add(p.id)
            if p.category not in category_ids:
                raise CatalogError(f"{where}: unknown category {p.category!r}")
            if p.account_length == 0:
                raise CatalogError(f"{where}: account_mask has no '*' slots")
            try:
                re.compile(p.account_pattern)
            except re.error as exc:
                raise CatalogError(f"{where}: account_pattern is not a regex: {exc}") from exc
            if not 0 < p.min_minor <= p.max_minor:
                raise CatalogError(f"{where}: need 0 < min_minor <= max_minor")
            for i, b in enumerate(p.bands):
                if b.percent_bp < 0 or b.fixed_minor < 0 or b.min_minor < 0:
                    raise CatalogError(f"{where}: band {i} has a negative value")
                if b.to_minor is not None and b.to_minor <= b.from_minor:
                    raise CatalogError(f"{where}: band {i} has to_minor <= from_minor")
                if b.max_minor is not None and b.max_minor < b.min_minor:
                    raise CatalogError(f"{where}: band {i} has max_minor < min_minor")
                if b.percent_bp >= BASIS_POINTS:
                    raise CatalogError(
                        f"{where}: band {i} has percent_bp >= {BASIS_POINTS} (100 %): "
                        "the fee would take every payment"
                    )
            zero = p.zero_credit_at()
            if zero is not None:
                raise CatalogError(
                    f"{where}: a payment of {zero} minor units (min_minor is {p.min_minor}) "
                    f"would credit nothing: the fee is {p.commission(zero)}; raise min_minor "
                    "above the smallest fee"
                )


RUB = 100  # kopecks per rouble

# The fixed 10 ₽ fee below 500 ₽ would take a lone 10 ₽ note whole: the minimum is above it.
MOBILE_MIN_MINOR = 50 * RUB

_PHONE_MASK = "+7 (***) ***-**-**"
_MOBILE_PATTERN = r"9\d{9}"


def _mobile(pid: str, ru: str, en: str, percent_bp: int) -> Provider:
    return Provider(
        id=pid,
        name_ru=ru,
        name_en=en,
        category="mobile",
        account_mask=_PHONE_MASK,
        account_pattern=_MOBILE_PATTERN,
        min_minor=MOBILE_MIN_MINOR,
        max_minor=15_000 * RUB,
        bands=(
            CommissionBand(from_minor=0, to_minor=500 * RUB, percent_bp=0, fixed_minor=10 * RUB),
            CommissionBand(
                from_minor=500 * RUB, percent_bp=percent_bp, min_minor=10 * RUB, max_minor=300 * RUB
            ),
        ),
    )


DEMO_CATALOG = Catalog(
    categories=(
        ("mobile", "Мобильная связь", "Mobile"),
        ("internet", "Интернет и ТВ", "Internet & TV"),
        ("utilities", "ЖКХ", "Utilities"),
    ),
    providers=(
        _mobile("mts", "МТС", "MTS", 300),
        _mobile("beeline", "Билайн", "Beeline", 300),
        _mobile("megafon", "МегаФон", "MegaFon", 250),
        _mobile("tele2", "Tele2", "Tele2", 200),
        Provider(
            id="rostelecom",
            name_ru="Ростелеком — интернет",
            name_en="Rostelecom internet",
            category="internet",
            account_mask="***-***-***-***",
            account_pattern=r"\d{12}",
            min_minor=50 * RUB,
            max_minor=15_000 * RUB,
            bands=(CommissionBand(percent_bp=150, min_minor=15 * RUB),),
        ),
        Provider(
            id="domru",
            name_ru="Дом.ру",
            name_en="Dom.ru",
            category="internet",
            account_mask="** ********",
            account_pattern=r"\d{10}",
            min_minor=100 * RUB,
            max_minor=15_000 * RUB,
            bands=(),  # no fee
        ),
        Provider(
            id="mosenergosbyt",
            name_ru="Мосэнергосбыт",
            name_en="Mosenergosbyt electricity",
            category="utilities",
            account_mask="*****-***-**",
            account_pattern=r"\d{10}",
            min_minor=100 * RUB,
            max_minor=15_000 * RUB,
            bands=(
                CommissionBand(
                    percent_bp=100, fixed_minor=0, min_minor=20 * RUB, max_minor=150 * RUB
                ),
            ),
        ),
    ),
)
