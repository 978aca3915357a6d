"""The desk's config document: signed, versioned, retained on `kiosk/v1/{t}/config`.

Body (purpose "config"):

    {"version": 7, "terminal_id": "T0001" | "*", "issued_ms": 1767…,
     "support_phone": "8 800 …",                       # optional
     "catalog": {"categories": […], "providers": […]},  # optional, as [catalog] in TOML
     "commissions": {"mts": [{"from_minor": 0, "percent_bp": 300, …}]},  # optional
     "help_texts": {"how_to_pay": {"ru": "…", "en": "…"}},  # optional
     "technician_pin_hash": "scrypt$…",                 # optional
     "offers": {"account_key": "…", "items": […]},      # optional: kiosk/offers.py
     "help_center": {"categories": […], "articles": […], …}}  # optional: kiosk/help_center.py

Parsed and validated completely here (pure) before anything is applied; the agent then
applies every part at once (`PaymentEngine.apply_desk_config`) and records the version
(config_versions), so a document is never half-applied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from drivers.fieldspec import Field, Invalid, read_fields
from kiosk.catalog import Catalog, CatalogError
from kiosk.coded_error import CodedError
from kiosk.config import ConfigError, bands_from_list, catalog_from_table
from kiosk.help_center import HelpCenter, HelpCenterError, parse_help_center
from kiosk.offers import OfferRules, OffersError, parse_offers
from sync.commands import valid_phone

MAX_HELP_TEXT = 4000
MAX_PIN_HASH = 512
MAX_VERSION = 2**53 - 1


def _help_texts_ok(texts: dict[str, Any]) -> bool:
    return all(
        isinstance(k, str)
        and isinstance(v, dict)
        and set(v) <= {"ru", "en"}
        and all(isinstance(x, str) and len(x) <= MAX_HELP_TEXT for x in v.values())
        for k, v in texts.items()
    )


DOC_FIELDS: dict[str, Field] = {
    "version": Field(int, what="a positive integer", lo=1, hi=MAX_VERSION),
    "terminal_id": Field(str, what="a terminal id or '*'"),  # this terminal's: per call
    "issued_ms": Field(int, what="a non-negative integer", lo=0),
    "support_phone": Field(str, None, "a phone number", check=valid_phone),
    "catalog": Field(dict, None, "a non-empty object", check=bool),
    "commissions": Field(dict, None, "an object mapping provider ids to band lists"),
    "help_texts": Field(dict, None, "an object mapping keys to {ru, en} strings",
                        check=_help_texts_ok),
    "technician_pin_hash": Field(
        str, None, "an scrypt hash",
        check=lambda h: h.startswith("scrypt$") and len(h) <= MAX_PIN_HASH,
    ),
    "offers": Field(dict, None, "an offers section (docs/offers.md)"),
    "help_center": Field(dict, None, "a help center object (docs/self-service.md)"),
}
"""The document's fields (drivers.fieldspec); absent optional ones are None."""
FIELDS = set(DOC_FIELDS)
_REFUSAL_CODES = {"version": "malformed", "issued_ms": "malformed",
                  "terminal_id": "wrong_terminal"}
"""The refusal code of a bad field; any other is "bad_value"."""


class ConfigDocError(CodedError, ValueError):
    """A desk config document refused as a whole (nothing of it applied)."""


@dataclass(frozen=True)
class ConfigDoc:
    version: int
    support_phone: str | None
    catalog: Catalog | None
    help_texts: dict[str, dict[str, str]] | None
    pin_hash: str | None
    offers: OfferRules | None = None
    help_center: HelpCenter | None = None


def parse_config_doc(body: dict[str, Any], terminal_id: str, current: Catalog) -> ConfigDoc:
    extra = sorted(set(body) - FIELDS)
    if extra:
        raise ConfigDocError("malformed", f"unknown field {extra[0][:32]!r}")
    audience = Field(str, what=f"{terminal_id!r} or '*'", check=lambda t: t in ("*", terminal_id))
    try:
        doc = read_fields(body, {**DOC_FIELDS, "terminal_id": audience})
    except Invalid as exc:
        code = _REFUSAL_CODES.get(exc.path, "bad_value")
        if code == "wrong_terminal":
            raise ConfigDocError(code, f"addressed to {str(body.get('terminal_id'))[:32]!r}"
                                 ) from exc
        raise ConfigDocError(code, f"{exc.path} {exc.problem}") from exc
    version, phone = doc["version"], doc["support_phone"]

    catalog = None
    source = f"desk config v{version}"
    try:
        if doc["catalog"] is not None:
            catalog = catalog_from_table(doc["catalog"], source)
        if doc["commissions"] is not None:
            catalog = _commissions(doc["commissions"], catalog or current, source)
    except ConfigError as exc:
        raise ConfigDocError("bad_value", str(exc)) from exc

    offers = None
    if doc["offers"] is not None:
        try:
            offers = parse_offers(doc["offers"])
        except OffersError as exc:
            raise ConfigDocError("bad_value", str(exc)) from exc
    help_texts, pin_hash = doc["help_texts"], doc["technician_pin_hash"]
    try:
        center = None if doc["help_center"] is None else parse_help_center(doc["help_center"])
    except HelpCenterError as exc:
        raise ConfigDocError("bad_value", str(exc)) from exc
    return ConfigDoc(version, phone, catalog, help_texts, pin_hash, offers, center)


def _commissions(table: dict[str, Any], catalog: Catalog, source: str) -> Catalog:
    providers = list(catalog.providers)
    for pid, bands in table.items():
        index = next((i for i, p in enumerate(providers) if p.id == pid), None)
        if index is None:
            raise ConfigDocError("bad_value", f"commissions: unknown provider {pid[:32]!r}")
        if not isinstance(bands, list):
            raise ConfigDocError("bad_value", f"commissions.{pid} must be a list of bands")
        parsed = bands_from_list(bands, source, f"commissions.{pid}")
        providers[index] = dataclasses.replace(providers[index], bands=parsed)
    out = Catalog(providers=tuple(providers), categories=catalog.categories)
    try:
        out.validate()
    except CatalogError as exc:
        raise ConfigDocError("bad_value", f"commissions: {exc}") from exc
    return out
