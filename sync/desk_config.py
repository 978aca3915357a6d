"""The desk's config document: signed, versioned, retained on `kiosk/v1/{t}/config`.

Body (purpose "config"):

    {"version": 7, "terminal_id": "T0001" | "*", "issued_ms": 1767…,
     "support_phone": "8 800 …",                       # optional
     "catalog": {"categories": […], "providers": […]},  # optional, as [catalog] in TOML
     "commissions": {"mts": [{"from_minor": 0, "percent_bp": 300, …}]},  # optional
     "help_texts": {"how_to_pay": {"ru": "…", "en": "…"}},  # optional
     "technician_pin_hash": "scrypt$…"}                 # optional

Parsed and validated completely here (pure) before anything is applied; the agent then
applies every part at once (`PaymentEngine.apply_desk_config`) and records the version
(config_versions), so a document is never half-applied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from kiosk.catalog import Catalog, CatalogError
from kiosk.coded_error import CodedError
from kiosk.config import ConfigError, TableReader, read_band, read_catalog
from sync.commands import valid_phone

FIELDS = {
    "version",
    "terminal_id",
    "issued_ms",
    "support_phone",
    "catalog",
    "commissions",
    "help_texts",
    "technician_pin_hash",
}


class ConfigDocError(CodedError, ValueError):
    """A desk config document refused as a whole (nothing of it applied)."""


@dataclass(frozen=True)
class ConfigDoc:
    version: int
    support_phone: str | None
    catalog: Catalog | None
    help_texts: dict[str, dict[str, str]] | None
    pin_hash: str | None


def parse_config_doc(body: dict[str, Any], terminal_id: str, current: Catalog) -> ConfigDoc:
    extra = sorted(set(body) - FIELDS)
    if extra:
        raise ConfigDocError("malformed", f"unknown field {extra[0][:32]!r}")
    version = body.get("version")
    if type(version) is not int or not 1 <= version < 2**53:
        raise ConfigDocError("malformed", "version must be a positive integer")
    target = body.get("terminal_id")
    if target not in ("*", terminal_id):
        raise ConfigDocError("wrong_terminal", f"addressed to {str(target)[:32]!r}")
    issued = body.get("issued_ms")
    if type(issued) is not int or issued < 0:
        raise ConfigDocError("malformed", "issued_ms must be a non-negative integer")

    phone = body.get("support_phone")
    if phone is not None and (not isinstance(phone, str) or not valid_phone(phone)):
        raise ConfigDocError("bad_value", "support_phone must be a phone number")

    catalog = None
    source = f"desk config v{version}"
    try:
        if "catalog" in body:
            table = body["catalog"]
            if not isinstance(table, dict) or not table:
                raise ConfigDocError("bad_value", "catalog must be a non-empty object")
            catalog = read_catalog(TableReader(source, "catalog", table))
        if "commissions" in body:
            catalog = _commissions(body["commissions"], catalog or current, source)
    except ConfigError as exc:
        raise ConfigDocError("bad_value", str(exc)) from exc

    help_texts = body.get("help_texts")
    if help_texts is not None:
        ok = isinstance(help_texts, dict) and all(
            isinstance(k, str)
            and isinstance(v, dict)
            and set(v) <= {"ru", "en"}
            and all(isinstance(x, str) and len(x) <= 4000 for x in v.values())
            for k, v in help_texts.items()
        )
        if not ok:
            raise ConfigDocError("bad_value", "help_texts must map keys to {ru, en} strings")

    pin_hash = body.get("technician_pin_hash")
    if pin_hash is not None and (
        not isinstance(pin_hash, str) or not pin_hash.startswith("scrypt$") or len(pin_hash) > 512
    ):
        raise ConfigDocError("bad_value", "technician_pin_hash must be an scrypt hash")
    return ConfigDoc(version, phone, catalog, help_texts, pin_hash)


def _commissions(table: Any, catalog: Catalog, source: str) -> Catalog:
    if not isinstance(table, dict):
        raise ConfigDocError("bad_value", "commissions must map provider ids to band lists")
    providers = list(catalog.providers)
    for pid, bands in table.items():
        index = next((i for i, p in enumerate(providers) if p.id == pid), None)
        if index is None:
            raise ConfigDocError("bad_value", f"commissions: unknown provider {pid[:32]!r}")
        if not isinstance(bands, list):
            raise ConfigDocError("bad_value", f"commissions.{pid} must be a list of bands")
        parsed = tuple(
            read_band(TableReader(source, f"commissions.{pid}[{j}]", b))
            for j, b in enumerate(bands)
        )
        providers[index] = dataclasses.replace(providers[index], bands=parsed)
    out = Catalog(providers=tuple(providers), categories=catalog.categories)
    try:
        out.validate()
    except CatalogError as exc:
        raise ConfigDocError("bad_value", f"commissions: {exc}") from exc
    return out
