"""Commission bands, rounding and account masks (docs/catalog.md)."""

from __future__ import annotations

import pytest

from kiosk.catalog import DEMO_CATALOG, Catalog, CatalogError, CommissionBand, Provider


def provider(*bands: CommissionBand) -> Provider:
    return Provider("p", "П", "P", "mobile", "***", r"\d{3}", 100, 1_000_000, bands)


@pytest.mark.parametrize(
    ("band", "inserted", "fee"),
    [
        (CommissionBand(percent_bp=300), 10_000, 300),  # 3 % of 100.00
        (CommissionBand(percent_bp=300), 1_050, 32),  # 31.5 → 32: half up
        (CommissionBand(percent_bp=300), 1_049, 31),  # 31.47 → 31
        (CommissionBand(percent_bp=150, fixed_minor=500), 10_000, 650),
        (CommissionBand(percent_bp=100, min_minor=2_000), 10_000, 2_000),  # minimum charge
        (CommissionBand(percent_bp=1_000, max_minor=5_000), 100_000, 5_000),  # maximum charge
        (CommissionBand(fixed_minor=1_000), 500, 500),  # never more than inserted (M9)
        (CommissionBand(), 10_000, 0),
    ],
)
def test_commission_rounding_and_clamps(band, inserted, fee):
    assert provider(band).commission(inserted) == fee


def test_bands_chosen_by_inserted_amount():
    p = provider(
        CommissionBand(from_minor=0, to_minor=50_000, fixed_minor=1_000),
        CommissionBand(from_minor=50_000, percent_bp=200),
    )
    assert p.commission(49_999) == 1_000
    assert p.commission(50_000) == 1_000  # 2 % of 500.00
    assert p.commission(100_000) == 2_000
    assert p.commission(0) == 0


def test_account_mask_and_validation():
    mts = DEMO_CATALOG.get("mts")
    assert mts is not None and mts.account_length == 10
    assert mts.format_account("916") == "+7 (916) ___-__-__"
    assert mts.format_account("9161234567") == "+7 (916) 123-45-67"
    assert mts.validate_account("9161234567")
    assert not mts.validate_account("916123456")
    assert not mts.validate_account("8161234567")


def test_demo_catalog_is_consistent():
    DEMO_CATALOG.validate()
    assert {p.category for p in DEMO_CATALOG.providers} == {"mobile", "internet", "utilities"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Provider("x", "X", "X", "nope", "***", r"\d{3}", 1, 2), "unknown category"),
        (Provider("x", "X", "X", "mobile", "+7", r"\d", 1, 2), "no '[*]' slots"),
        (Provider("x", "X", "X", "mobile", "***", r"(", 1, 2), "not a regex"),
        (Provider("x", "X", "X", "mobile", "***", r"\d{3}", 5, 2), "min_minor"),
        (
            Provider(
                "x", "X", "X", "mobile", "***", r"\d{3}", 1, 2, (CommissionBand(percent_bp=-1),)
            ),
            "negative",
        ),
    ],
)
def test_catalog_validation_names_provider_and_field(bad, message):
    cat = Catalog((bad,), (("mobile", "М", "M"),))
    with pytest.raises(CatalogError, match=message) as exc:
        cat.validate()
    assert "provider 'x'" in str(exc.value)
