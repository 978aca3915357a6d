"""The terminal's configuration: one TOML file, validated at start.

Every error names the file, the key and what was expected, because the person reading it
is a technician at a terminal, not the author. Unknown keys are errors too (a typo must
not silently fall back to a default). With no file at all the demo defaults apply.
See docs/configuration.md and config.example.toml.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import math
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any

from drivers.fieldspec import Field, Invalid, Problem, Table, join
from kiosk.catalog import DEMO_CATALOG, Catalog, CatalogError, CommissionBand, Provider

__all__ = [
    "ACCEPTOR_KINDS", "DEMO_PIN_HASH", "PRINTER_KINDS",
    "PRINTER_POLICIES", "AcceptorConfig", "Config", "ConfigError", "MqttConfig", "PathsConfig",
    "PrinterConfig", "TechnicianConfig", "TerminalConfig", "TimeoutsConfig", "bands_from_list",
    "catalog_from_table", "connect_timeout_problem", "keepalive_for", "load_config",
    "parse_config", "parse_host_port",
]
"""What other packages may use; the table readers behind them are this module's own."""

ACCEPTOR_KINDS = ("virtual", "ccnet", "id003")
PRINTER_KINDS = ("virtual", "escpos")
PRINTER_POLICIES = ("out_of_service", "warn")
ED25519_PUBLIC_KEY_BYTES = 32
# Demo PIN "1234" (scrypt). Real terminals get theirs from the file or the desk.
DEMO_PIN_HASH = (
    "scrypt$16384$8$1$a2lvc2stZGVtby1zYWx0IQ==$UwQ7MPwLFIqPHW+SjdFrcal9PvmtHhq60fyj+sqhsTo="
)


class ConfigError(ValueError):
    """The configuration is broken; the message says where and what was expected."""


@dataclass(frozen=True)
class TerminalConfig:
    id: str = "T0001"
    address: str = "Москва, ул. Примерная, 1"
    agent_name: str = "ООО «Платёжный агент»"
    support_phone: str = "8 800 555-35-35"
    status_url: str | None = "https://pay.example.ru/check/{payment_id}"
    currency: str = "RUB"
    # location tags the desk's offer rules match ("mall", "metro"): docs/offers.md
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathsConfig:
    data_dir: Path = Path("var/data")
    runtime_dir: Path = Path("var/run")
    log_dir: Path = Path("var/log")

    @property
    def ledger(self) -> Path:
        return self.data_dir / "ledger.sqlite"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "kiosk.sock"


@dataclass(frozen=True)
class AcceptorConfig:
    kind: str = "virtual"
    port: str = ""
    profile: str = ""  # firmware profile name; "" = detect from identification
    # virtual device only: its memory (survives a core crash) and its bill slot
    journal: Path | None = None
    inbox: Path | None = None
    ack_delay_ms: int = 0


@dataclass(frozen=True)
class PrinterConfig:
    kind: str = "virtual"
    port: str = ""
    profile: str = ""
    receipts_dir: Path | None = None  # virtual printer output
    unavailable_policy: str = "warn"  # or "out_of_service"


@dataclass(frozen=True)
class TimeoutsConfig:
    """Seconds per screen: the defaults Cyberplat terminals ship with."""

    provider: int = 60
    account: int = 70
    confirm: int = 30
    cash_first_bill: int = 60
    cash_after_bill: int = 120
    prompt: int = 15
    receipt: int = 30
    escrow_settle: int = 15


@dataclass(frozen=True)
class TechnicianConfig:
    pin_hash: str = ""
    session_timeout_s: int = 300
    max_attempts: int = 5
    lockout_s: int = 300


@dataclass(frozen=True)
class MqttConfig:
    """The MQTT session with the desk (sync/, docs/mqtt.md)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = ""  # "" = the terminal id
    keepalive_s: int = 30
    tls_ca: Path | None = None  # TLS on when set; client certificate from tls_cert/tls_key
    tls_cert: Path | None = None
    tls_key: Path | None = None
    signing_key: Path | None = None  # None = <data_dir>/keys/terminal.ed25519.key
    desk_keys: tuple[tuple[str, str], ...] = ()  # (key id, base64 raw Ed25519 public key)
    session_expiry_s: int = 7 * 24 * 3600
    will_delay_s: int = 0
    health_interval_s: int = 60
    health_min_interval_s: float = 2.0
    inflight: int = 1000  # payment/event records sent and awaiting the desk's ack
    batch: int = 50  # records per payments/events message
    resend_after_s: float = 30.0
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    # TCP connect + TLS handshake, and again the wait for CONNACK; longer than a NATS
    # node's MQTT js_api_timeout (docs/fleet.md "Subscriptions refused under load")
    connect_timeout_s: float = 10.0
    clock_skew_s: int = 300
    protocol: str = "5"  # "5" or "3.1.1" (a NATS cluster speaks 3.1.1 only)
    hosts: tuple[tuple[str, int], ...] = ()  # a cluster's nodes; () = host and port
    # ack and config at QoS 0: half the broker-side queues per terminal (a NATS cluster's
    # JetStream consumers); docs/mqtt.md "Light sessions"
    light_session: bool = False
    # publishes taken but no desk ack for this long (connected time): start the session afresh
    # (sync/ack_watch.py; docs/mqtt.md "Ack watch"); 0 = never
    ack_stall_s: float = 900.0
    # ... and for this long counted only while the desk's beat for this terminal is heard
    # (sync/desk_beat.py): the desk is up and storing, so the session is at fault; while
    # the desk was heard recently, its silence holds ack_stall_s off; 0 = beats unused
    ack_stall_heard_s: float = 300.0


MQTT_PROTOCOLS = ("5", "3.1.1")


_KEEPALIVE_OVER_CONNECT_TIMEOUT_S = 5


def keepalive_for(connect_timeout_s: float, keepalive_s: int = MqttConfig.keepalive_s) -> int:
    """The keep-alive to go with a connect timeout: `keepalive_s`, or a little longer than
    a longer timeout (connect_timeout_problem says why). The desk takes it, nats_kit
    advises it, the fleet benchmark's terminals use it."""
    return max(keepalive_s, math.ceil(connect_timeout_s) + _KEEPALIVE_OVER_CONNECT_TIMEOUT_S)


def connect_timeout_problem(connect_timeout_s: float, keepalive_s: int) -> str:
    """Why a connect timeout cannot go with this keep-alive ("" when it can), worded after
    the setting's name. paho closes a socket that has received nothing for keepalive
    seconds, a CONNACK wait included (its _check_keepalive): a longer connect timeout
    would silently end at the keep-alive."""
    if not 0 < connect_timeout_s < math.inf:
        return f"{connect_timeout_s:g}: give a positive number of seconds"
    if keepalive_s > 0 and connect_timeout_s > keepalive_s:
        return (f"{connect_timeout_s:g} s must not be longer than keepalive_s "
                f"({keepalive_s} s): the MQTT library gives up on a connection that has "
                f"heard nothing for keepalive_s, a CONNACK wait included; set keepalive_s "
                f"to {keepalive_for(connect_timeout_s, keepalive_s)}")
    return ""


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port`; ValueError saying why otherwise."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed '['")
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':port' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host or any(c.isspace() for c in host) or "/" in host:
        raise ValueError(f"{text!r} is not a host name or address")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be 1-65535")
    return host, int(port_text)


@dataclass(frozen=True)
class Config:
    terminal: TerminalConfig = field(default_factory=TerminalConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    acceptor: AcceptorConfig = field(default_factory=AcceptorConfig)
    printer: PrinterConfig = field(default_factory=PrinterConfig)
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    technician: TechnicianConfig = field(default_factory=lambda: TechnicianConfig(DEMO_PIN_HASH))
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    catalog: Catalog = DEMO_CATALOG
    source: Path | None = None


class TableReader:
    """Typed reads from one TOML table, remembering which keys were used: a
    `drivers.fieldspec.Table` whose refusals are `ConfigError`s that name the file."""

    def __init__(self, source: str, prefix: str, table: Any) -> None:
        self.source = source
        with self._named():
            self._table = Table(table, prefix)

    @property
    def prefix(self) -> str:
        return self._table.path

    @property
    def table(self) -> dict[str, Any]:
        return self._table.data

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """`Invalid` → `ConfigError` with the file's name in front of the key."""
        try:
            yield
        except Invalid as exc:
            if exc.kind is Problem.TABLE:
                raise ConfigError(f"{self.source}: '{exc.path}' {exc.problem}, got {exc.value}"
                                  ) from exc
            raise ConfigError(f"{self.source}: {exc}") from exc

    def where(self, key: str) -> str:
        return f"{self.source}: key '{self._table.where(key)}'"

    def read(self, key: str, field: Field) -> Any:
        with self._named():
            return self._table.get(key, field)

    def get(self, key: str, expected: type | UnionType, default: Any, what: str = "") -> Any:
        # the default is returned as given, never checked: None means "absent"
        value = self.read(key, Field(expected, _ABSENT, what))
        return default if value is _ABSENT else value

    def positive(self, key: str, default: int) -> int:
        value: int = self.read(key, Field(int, default, "a positive integer", lo=1))
        return value

    def non_negative(self, key: str, default: int) -> int:
        value: int = self.read(key, Field(int, default, "an integer 0 or more", lo=0))
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.read(key, Field(str, default, choices=choices))
        return value

    def path(self, key: str, default: Path | None, base: Path) -> Path | None:
        value = self.get(key, str, None, "a path string")
        if value is None:
            return default
        p = Path(value)
        return p if p.is_absolute() else base / p

    def sub(self, key: str) -> TableReader:
        with self._named():
            sub = self._table.sub(key)
        return TableReader(self.source, sub.path, sub.data)

    def tables(self, key: str) -> Iterator[TableReader]:
        """Each table of the list under `key`, named `key[i]` in errors."""
        with self._named():
            subs = list(self._table.tables(key))
        for sub in subs:
            yield TableReader(self.source, sub.path, sub.data)

    def finish(self) -> None:
        with self._named():
            self._table.finish()


_ABSENT = object()


def _tags(r: TableReader) -> tuple[str, ...]:
    tags = r.get("tags", list, [])
    if not all(isinstance(t, str) and t and len(t) <= 64 for t in tags):
        raise ConfigError(f"{r.where('tags')} must be a list of non-empty strings, got {tags!r}")
    return tuple(tags)


def _terminal(r: TableReader) -> TerminalConfig:
    d = TerminalConfig()
    tid = r.get("id", str, d.id)
    if not tid or not tid.replace("-", "").isalnum() or len(tid) > 32:
        raise ConfigError(f"{r.where('id')} must be 1-32 letters, digits or '-', got {tid!r}")
    phone = r.get("support_phone", str, d.support_phone)
    if sum(ch.isdigit() for ch in phone) < 3:
        raise ConfigError(f"{r.where('support_phone')} must be a phone number, got {phone!r}")
    out = TerminalConfig(
        id=tid,
        address=r.get("address", str, d.address),
        agent_name=r.get("agent_name", str, d.agent_name),
        support_phone=phone,
        status_url=r.get("status_url", str, d.status_url) or None,
        currency=r.get("currency", str, d.currency),
        tags=_tags(r),
    )
    r.finish()
    return out


_BAND_FIELDS = {
    name: Field(int, None if name in ("to_minor", "max_minor") else 0)
    for name in ("from_minor", "to_minor", "percent_bp", "fixed_minor", "min_minor", "max_minor")
}
_CATEGORY_FIELDS = {name: Field(str, "") for name in ("id", "name_ru", "name_en")}
_PROVIDER_FIELDS = {
    "id": Field(str),
    "name_ru": Field(str),
    "name_en": Field(str),
    "category": Field(str),
    "account_mask": Field(str),
    "account_pattern": Field(str),
    "min_minor": Field(int),
    "max_minor": Field(int),
    "currency": Field(str, "RUB"),
}


def _band(r: TableReader) -> CommissionBand:
    band = CommissionBand(**{key: r.read(key, field) for key, field in _BAND_FIELDS.items()})
    r.finish()
    return band


def bands_from_list(items: list[Any], source: str, prefix: str) -> tuple[CommissionBand, ...]:
    """Commission bands from a list of tables (TOML or the desk's JSON), named
    `prefix[i]` in errors."""
    return tuple(_band(TableReader(source, join(prefix, j), b)) for j, b in enumerate(items))


def catalog_from_table(table: Any, source: str, prefix: str = "catalog") -> Catalog:
    """A catalog (categories, providers, their bands) from a `[catalog]`-shaped table, for
    the terminal's file and the desk's config document alike; ConfigError names the key."""
    return _read_catalog(TableReader(source, prefix, table))


def _read_catalog(r: TableReader) -> Catalog:
    if not r.table:
        return DEMO_CATALOG
    categories = []
    for cr in r.tables("categories"):
        category = {key: cr.read(key, field) for key, field in _CATEGORY_FIELDS.items()}
        categories.append((category["id"], category["name_ru"], category["name_en"]))
        cr.finish()
    providers = []
    for pr in r.tables("providers"):
        values = {key: pr.read(key, field) for key, field in _PROVIDER_FIELDS.items()}
        bands = tuple(_band(br) for br in pr.tables("bands"))
        providers.append(Provider(bands=bands, **values))
        pr.finish()
    r.finish()
    catalog = Catalog(providers=tuple(providers), categories=tuple(categories))
    if not catalog.providers:
        raise ConfigError(f"{r.where('providers')} must list at least one provider")
    try:
        catalog.validate()
    except CatalogError as exc:
        raise ConfigError(f"{r.source}: catalog: {exc}") from exc
    return catalog


def _seconds(r: TableReader, key: str, default: float) -> float:
    value = r.read(key, Field(int | float, default, "a positive number of seconds",
                              check=lambda v: v > 0))
    return float(value)


def _hosts(r: TableReader) -> tuple[tuple[str, int], ...]:
    """`hosts = ["a.example.ru:8883", "b.example.ru:8883"]`: a cluster's nodes."""
    value = r.get("hosts", list, [], 'a list of "host:port" strings')
    out = []
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f'{r.where("hosts")} must be a list of "host:port" strings, '
                              f"got {item!r}")
        try:
            host, port = parse_host_port(item, 0)
        except ValueError as exc:
            raise ConfigError(f"{r.where('hosts')}: {exc}") from exc
        if port == 0:
            raise ConfigError(f"{r.where('hosts')}: {item!r} needs its port (host:port)")
        out.append((host, port))
    if len(set(out)) != len(out):
        raise ConfigError(f"{r.where('hosts')} names an endpoint twice")
    return tuple(out)


def _mqtt(r: TableReader, base: Path) -> MqttConfig:
    d = MqttConfig()
    keys = r.get("desk_keys", dict, {}, "a table of key id = base64 public key")
    desk_keys = []
    for kid, value in keys.items():
        raw = b""
        if isinstance(value, str):
            try:
                raw = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
        if len(raw) != ED25519_PUBLIC_KEY_BYTES:
            raise ConfigError(
                f"{r.where('desk_keys.' + kid)} must be a base64 Ed25519 public key "
                f"({ED25519_PUBLIC_KEY_BYTES} bytes, as `kiosk desk keygen` prints it), "
                f"got {str(value)[:24]!r}"
            )
        desk_keys.append((kid, value.strip()))
    out = MqttConfig(
        enabled=r.get("enabled", bool, False),
        host=r.get("host", str, d.host),
        port=r.positive("port", d.port),
        client_id=r.get("client_id", str, ""),
        keepalive_s=r.positive("keepalive_s", d.keepalive_s),
        tls_ca=r.path("tls_ca", None, base),
        tls_cert=r.path("tls_cert", None, base),
        tls_key=r.path("tls_key", None, base),
        signing_key=r.path("signing_key", None, base),
        desk_keys=tuple(desk_keys),
        session_expiry_s=r.positive("session_expiry_s", d.session_expiry_s),
        will_delay_s=r.get("will_delay_s", int, d.will_delay_s, "an integer"),
        health_interval_s=r.positive("health_interval_s", d.health_interval_s),
        health_min_interval_s=_seconds(r, "health_min_interval_s", d.health_min_interval_s),
        inflight=r.positive("inflight", d.inflight),
        batch=r.positive("batch", d.batch),
        resend_after_s=_seconds(r, "resend_after_s", d.resend_after_s),
        reconnect_min_s=_seconds(r, "reconnect_min_s", d.reconnect_min_s),
        reconnect_max_s=_seconds(r, "reconnect_max_s", d.reconnect_max_s),
        connect_timeout_s=_seconds(r, "connect_timeout_s", d.connect_timeout_s),
        clock_skew_s=r.positive("clock_skew_s", d.clock_skew_s),
        # the string "5" or "3.1.1": a bare 5 in TOML is a number, and must be told so
        protocol=r.read("protocol", Field(str, d.protocol, choices=MQTT_PROTOCOLS,
                                          what='"5" or "3.1.1" (a string, quoted)')),
        hosts=_hosts(r),
        light_session=r.get("light_session", bool, d.light_session, "true or false"),
        ack_stall_s=r.read("ack_stall_s", Field(float, d.ack_stall_s,
                                                  "0 (off) or a number of seconds", lo=0)),
        ack_stall_heard_s=r.read("ack_stall_heard_s", Field(
            float, d.ack_stall_heard_s, "0 (off) or a number of seconds", lo=0)),
    )
    if out.hosts and ("host" in r.table or "port" in r.table):
        raise ConfigError(f"{r.where('hosts')} replaces mqtt.host and mqtt.port: give one "
                          "or the other")
    if (out.tls_cert is None) != (out.tls_key is None):
        raise ConfigError(f"{r.where('tls_cert')} and 'mqtt.tls_key' go together")
    if out.tls_cert is not None and out.tls_ca is None:
        raise ConfigError(f"{r.where('tls_ca')} is required with a client certificate")
    if "connect_timeout_s" not in r.table:  # a file with a short keep-alive still loads
        out = dataclasses.replace(out, connect_timeout_s=min(out.connect_timeout_s,
                                                             out.keepalive_s))
    why = connect_timeout_problem(out.connect_timeout_s, out.keepalive_s)
    if why:
        raise ConfigError(f"{r.where('connect_timeout_s')}: {why}")
    if out.reconnect_max_s < out.reconnect_min_s:
        raise ConfigError(f"{r.where('reconnect_max_s')} must be >= mqtt.reconnect_min_s")
    for key in ("ack_stall_s", "ack_stall_heard_s"):
        if 0 < getattr(out, key) <= out.resend_after_s:
            raise ConfigError(f"{r.where(key)} must be 0 (off) or longer than "
                              f"mqtt.resend_after_s ({out.resend_after_s:g} s): a reset "
                              "needs a resend that went unanswered")
    if out.will_delay_s < 0:
        raise ConfigError(f"{r.where('will_delay_s')} must be 0 or more")
    r.finish()
    return out


def parse_config(data: dict[str, Any], source: str, base: Path) -> Config:
    root = TableReader(source, "", data)
    terminal = _terminal(root.sub("terminal"))

    pr = root.sub("paths")
    d = PathsConfig()
    paths = PathsConfig(
        data_dir=pr.path("data_dir", base / d.data_dir, base) or d.data_dir,
        runtime_dir=pr.path("runtime_dir", base / d.runtime_dir, base) or d.runtime_dir,
        log_dir=pr.path("log_dir", base / d.log_dir, base) or d.log_dir,
    )
    pr.finish()

    ar = root.sub("acceptor")
    acceptor = AcceptorConfig(
        kind=ar.choice("kind", ACCEPTOR_KINDS, "virtual"),
        port=ar.get("port", str, ""),
        profile=ar.get("profile", str, ""),
        journal=ar.path("journal", None, base),
        inbox=ar.path("inbox", None, base),
        ack_delay_ms=ar.non_negative("ack_delay_ms", 0),
    )
    if acceptor.kind in ("ccnet", "id003") and not acceptor.port:
        raise ConfigError(f"{ar.where('port')} is required when acceptor.kind is {acceptor.kind!r}")
    ar.finish()

    prr = root.sub("printer")
    printer = PrinterConfig(
        kind=prr.choice("kind", PRINTER_KINDS, "virtual"),
        port=prr.get("port", str, ""),
        profile=prr.get("profile", str, ""),
        receipts_dir=prr.path("receipts_dir", None, base),
        unavailable_policy=prr.choice("unavailable_policy", PRINTER_POLICIES, "warn"),
    )
    if printer.kind == "escpos" and not printer.port:
        raise ConfigError(f"{prr.where('port')} is required when printer.kind is 'escpos'")
    prr.finish()

    tr = root.sub("timeouts")
    dt = TimeoutsConfig()
    timeouts = TimeoutsConfig(
        **{k: tr.positive(k, getattr(dt, k)) for k in dt.__dataclass_fields__}
    )
    tr.finish()

    te = root.sub("technician")
    dtech = TechnicianConfig()
    pin_hash = te.get("pin_hash", str, "")
    if pin_hash and not pin_hash.startswith("scrypt$"):
        raise ConfigError(
            f"{te.where('pin_hash')} must be an scrypt hash made by 'kiosk pin-hash', not a PIN"
        )
    technician = TechnicianConfig(
        pin_hash=pin_hash,
        session_timeout_s=te.positive("session_timeout_s", dtech.session_timeout_s),
        max_attempts=te.positive("max_attempts", dtech.max_attempts),
        lockout_s=te.positive("lockout_s", dtech.lockout_s),
    )
    te.finish()

    mqtt = _mqtt(root.sub("mqtt"), base)

    catalog = _read_catalog(root.sub("catalog"))
    root.finish()
    return Config(terminal, paths, acceptor, printer, timeouts, technician, mqtt, catalog)


def load_config(path: Path | None) -> Config:
    """Load and validate; `None` gives the demo defaults under ./var."""
    if path is None:
        return parse_config({"technician": {"pin_hash": DEMO_PIN_HASH}}, "<defaults>", Path.cwd())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    config = parse_config(data, str(path), path.resolve().parent)
    return Config(**{**config.__dict__, "source": path})
