"""The fleet's NATS cluster configuration, rendered from the files in deploy/nats/.

    python -m sync.nats_kit users --ids ids.txt --out users.conf   (one terminal id a line)
        [--operator-password-file P]   (the kiosk.operator user for reset-sessions)
    python -m sync.nats_kit node --kit DIR --name n1 --routes n2:6222,n3:6222 --out kiosk.conf
        [--for-version "$(nats-server --version)"]   (what that release needs and takes)
        [--max-consumers 1000000]   (NATS 2.15 and later: docs/fleet.md "Upstream NATS")
    python -m sync.nats_kit reset-sessions --server 127.0.0.1:4222 [--password-file P]
        [--dry-run]   (after a full-cluster loss: docs/fleet.md "Resetting the MQTT sessions")
    python -m sync.nats_kit consumers --monitor n1:8222 --monitor n2:8222 --monitor n3:8222
        [--fail-at 80]   (leftover consumers after a full-cluster restart, and the share of
        the consumer limit taken: docs/fleet.md "Leftover consumers"; exit 0 none, 3 some,
        4 at or past --fail-at percent of the limit, 1 no node answered)
    python -m sync.nats_kit terminal T-00042 --monitor n1:8222 --monitor n2:8222 ...
        (a terminal that hears nothing: its connection and its subscriptions' consumers;
        exit 0 every one can deliver, 3 one cannot, 1 no node answered)
    python -m sync.nats_kit prune-consumers --monitor n1:8222 ... --server 127.0.0.1:4222
        [--password-file P] [--dry-run]   (leftover consumers deleted one by one, sessions
        kept; a terminal connected nowhere by its session's record: docs/fleet.md
        "Leftover consumers")

`node.conf` and `users.conf` are the shipped templates; this module only substitutes their
@PLACEHOLDER@s and keeps or drops their optional "# begin: NAME" ... "# end: NAME"
sections, so what the tests run is what an operator installs (docs/fleet.md). The TLS
files come from `kiosk broker-kit init` (the same CAs and server certificate as the
mosquitto layout): `tls_files` copies them next to the rendered configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from kiosk.config import keepalive_for
from sync import topics
from sync.broker_kit import DESK_IDENTITY, SERVER_CERT, SERVER_KEY, Kit
from sync.nats_admin import DEFAULT_TIMEOUT_S, NatsAdmin, NatsAdminError
from sync.nats_census import JSZ_TIMEOUT_S, MQTT_MSGS_STREAM, consumer_census, read_views
from sync.nats_probe import probe_terminal, read_connections
from sync.nats_prune import (
    CONFIRM_AFTER_S,
    MIN_AGE_S,
    SESSION_STREAM,
    LeftoverSurvey,
    SessionRecord,
    find_leftovers,
    parse_session_record,
    read_subscribed,
    session_subject,
)

SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "nats"
NODE = "node.conf"
USERS = "users.conf"
CLIENTS_CA = "clients-ca.pem"
SECTION_CLUSTER = "cluster"
SECTION_TLS = "tls"
SECTION_TERMINAL = "terminal"
SECTION_OPERATOR = "operator"
SECTION_CONSUMER_LIMIT = "consumer_limit"
SECTION_ONE_COPY = "one_copy_consumers"
SECTION_API_TIMEOUT = "api_timeout"
# mqtt.js_api_timeout: NATS 2.11.3 added it, earlier releases refuse the line. 30 s:
# measured against 5 and 10 in a connect storm near capacity (docs/fleet.md); its cost,
# a node's MQTT waiting that long after a start, keeps it the operator's choice.
API_TIMEOUT_SINCE = (2, 11, 3)
FLEET_MQTT_API_TIMEOUT_S = 30
# A node may hold a CONNECT for one such call (its first after a start: the sessions
# stream's lookup) before answering; the terminals must wait longer than that, with room
# for the TLS handshake and a loaded node (docs/fleet.md).
CONNECT_TIMEOUT_MARGIN_S = 10
# NATS 2.15 caps every stream at 1,000 consumers by default; MQTT needs four per terminal
# (QoS 1 subscriptions as consumers of $MQTT_msgs). Earlier versions refuse the setting.
CONSUMER_LIMIT_SINCE = (2, 15)
# consumer_replicas is honoured by 2.9.10 and 2.9.11 only; later releases ignore it and
# their `nats-server -t` refuses the line.
ONE_COPY_UNTIL = (2, 9, 11)
FLEET_MAX_CONSUMERS = 1_000_000  # four per terminal for 200,000 terminals, with headroom
OPERATOR_USER = "kiosk.operator"
OPERATOR_PASSWORD = "OPERATOR_PASSWORD"  # the placeholder's name in users.conf
MIN_PASSWORD_CHARS = 16
# users.conf holds a bcrypt hash of the operator password, never the password: nats-server
# reads a password starting with $2a$ (or $2b$, $2x$, $2y$) as one. $2a$ at cost 11, as
# NATS's own tooling writes them; the cost is ≈ 0.1 s of the node's CPU per operator
# connect. (NATS 2.9 still warns "Plaintext passwords detected": it counts the
# certificate users, docs/fleet.md.)
BCRYPT_VARIANT = b"2a"
BCRYPT_COST = 11
BCRYPT_MAX_BYTES = 72  # bcrypt reads no further; the library refuses longer passwords
# Exactly these: the broker's sessions and QoS 1 messages, both disposable because
# exactly once rests on the ledger outbox and the desk's signed acks. Never $MQTT_rmsgs
# (the terminals' retained state, health and config) nor anything else.
RESET_STREAMS = ("$MQTT_sess", "$MQTT_msgs")
CLIENT_PORT = 4222
MONITOR_PORT = 8222  # node.conf's `http`, loopback or a private network
_PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


class NatsKitError(ValueError):
    """A configuration that cannot be rendered; the message says which value is wrong."""


def _section(name: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*# begin: {name}\n(.*?)^[ \t]*# end: {name}\n",
                      re.DOTALL | re.MULTILINE)


def keep_sections(text: str, keep: Iterable[str], drop: Iterable[str]) -> str:
    """Keep the bodies of the `keep` sections (without their markers), remove `drop` ones."""
    for name in keep:
        text = _section(name).sub(lambda m: m.group(1), text)
    for name in drop:
        text = _section(name).sub("", text)
    return text


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every @NAME@; a placeholder without a value is an error, never left in."""
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise NatsKitError(f"no value for {', '.join('@' + m + '@' for m in missing)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


@dataclass(frozen=True)
class NodeSpec:
    """One node's values for node.conf. `routes` empty: a lone node (no cluster block)."""

    server_name: str
    client_listen: str
    monitor_listen: str
    store_dir: Path
    mqtt_listen: str
    replicas: int = 3
    consumer_replicas: int | None = None  # None: as many as the streams (`replicas`)
    cluster_name: str = "kiosk"
    cluster_listen: str = "0.0.0.0:6222"
    routes: tuple[str, ...] = ()
    conf_dir: Path | None = None  # TLS files and users.conf; None: no TLS (labs only)
    max_consumers: int | None = None  # NATS 2.15 and later only; None: no such line
    mqtt_api_timeout_s: int | None = None  # NATS 2.11.3 and later only; None: no line
    extra: dict[str, str] = field(default_factory=dict)

    def consumer_copies(self) -> int:
        """1, or as many as the streams: NATS places a consumer on its stream's peers, and
        two copies would add a Raft group without surviving what one copy cannot."""
        n = self.replicas if self.consumer_replicas is None else self.consumer_replicas
        if n not in (1, self.replicas):
            raise NatsKitError(f"consumer replicas {n}: use 1 or the streams' {self.replicas}")
        return n

    def values(self) -> dict[str, str]:
        return {
            "SERVER_NAME": self.server_name,
            "CLIENT_LISTEN": self.client_listen,
            "MONITOR_LISTEN": self.monitor_listen,
            "STORE_DIR": str(self.store_dir),
            "MQTT_LISTEN": self.mqtt_listen,
            "REPLICAS": str(self.replicas),
            "CLUSTER_NAME": self.cluster_name,
            "CLUSTER_LISTEN": self.cluster_listen,
            "ROUTES": ", ".join(f'"nats-route://{r}"' for r in self.routes),
            "CONF_DIR": str(self.conf_dir or ""),
            "MAX_CONSUMERS": str(self.max_consumers or ""),
            "MQTT_API_TIMEOUT": f"{self.mqtt_api_timeout_s}s" if self.mqtt_api_timeout_s
            else "",
            **self.extra,
        }


def parse_version(text: str) -> tuple[int, ...]:
    """(2, 15, 1) from "2.15.1", "v2.15.1" or `nats-server --version`'s "nats-server: v2.15.1"."""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    if m is None:
        raise NatsKitError(f"no NATS version in {text[:60]!r}")
    return tuple(int(g) for g in m.groups())


def needs_consumer_limit(version: str) -> bool:
    """Whether a node of this nats-server version needs the consumer_limit section."""
    return parse_version(version)[:2] >= CONSUMER_LIMIT_SINCE


def takes_api_timeout(version: str) -> bool:
    """Whether a node of this nats-server version takes mqtt's js_api_timeout."""
    return parse_version(version) >= API_TIMEOUT_SINCE


def fit_to_version(spec: NodeSpec, version: str) -> tuple[NodeSpec, list[str]]:
    """The spec with what this nats-server release needs, and a line for each choice made:
    the consumer_limit section on 2.15 and later (the fleet's limit unless one is given),
    none before; one-copy consumers refused where the release ignores them. An operator
    who says which release the nodes run cannot render a file that release refuses."""
    release = ".".join(map(str, parse_version(version)))
    said: list[str] = []
    if needs_consumer_limit(release):
        if spec.max_consumers is None:
            spec = replace(spec, max_consumers=FLEET_MAX_CONSUMERS)
            said.append(f"NATS {release}: consumer_limit section kept, "
                        f"{FLEET_MAX_CONSUMERS} consumers per stream (--max-consumers "
                        f"to choose another number)")
    elif spec.max_consumers is not None:
        raise NatsKitError(f"NATS {release} refuses default_max_consumers (only 2.15 and "
                           f"later know it): leave --max-consumers out")
    if takes_api_timeout(release):
        if spec.mqtt_api_timeout_s is None:
            said.append(f"NATS {release}: MQTT's JetStream calls time out after NATS's 5 s; "
                        f"near the cluster's capacity --mqtt-api-timeout "
                        f"{FLEET_MQTT_API_TIMEOUT_S} keeps a connect storm from feeding "
                        f"itself (docs/fleet.md \"Subscriptions refused under load\")")
    elif spec.mqtt_api_timeout_s is not None:
        raise NatsKitError(f"NATS {release} refuses mqtt js_api_timeout (2.11.3 added it): "
                           f"leave --mqtt-api-timeout out")
    if spec.consumer_copies() == 1 and spec.replicas > 1 and \
            parse_version(release) > ONE_COPY_UNTIL:
        raise NatsKitError(f"NATS {release} ignores consumer_replicas (only 2.9.10 and "
                           f"2.9.11 honour 1) and its nats-server -t refuses the line: "
                           f"leave --consumer-replicas out")
    return spec, said


def connect_timeout_advice(api_timeout_s: int) -> str:
    """The line `node --mqtt-api-timeout N` prints: the terminals' side of the setting."""
    wait = api_timeout_s + CONNECT_TIMEOUT_MARGIN_S
    keepalive = keepalive_for(wait)
    return (f"MQTT js_api_timeout {api_timeout_s} s: a node may hold a CONNECT that long; set "
            f"the terminals' [mqtt] connect_timeout_s = {wait} with keepalive_s = "
            f"{keepalive}, and the desk's --connect-timeout {wait} "
            f"(their 10 s default gives up first; docs/fleet.md \"Subscriptions refused "
            f"under load\")")


def render_node(spec: NodeSpec, template: str | None = None) -> str:
    """node.conf for one node: the cluster section only with routes, TLS only with a
    conf_dir. The header's placeholder list is kept as documentation."""
    text = template if template is not None else (SHIPPED / NODE).read_text(encoding="utf-8")
    keep: list[str] = []
    drop: list[str] = []
    (keep if spec.routes else drop).append(SECTION_CLUSTER)
    (keep if spec.conf_dir is not None else drop).append(SECTION_TLS)
    if spec.max_consumers is not None and spec.max_consumers < 1:
        raise NatsKitError(f"max consumers {spec.max_consumers}: use a positive number, "
                           f"four per terminal and more ({FLEET_MAX_CONSUMERS} serves "
                           f"200,000 terminals)")
    (keep if spec.max_consumers is not None else drop).append(SECTION_CONSUMER_LIMIT)
    if spec.mqtt_api_timeout_s is not None and spec.mqtt_api_timeout_s < 1:
        raise NatsKitError(f"MQTT API timeout {spec.mqtt_api_timeout_s} s: use whole "
                           f"seconds, 1 or more ({FLEET_MQTT_API_TIMEOUT_S} as measured)")
    (keep if spec.mqtt_api_timeout_s is not None else drop).append(SECTION_API_TIMEOUT)
    # As many copies as the streams is NATS's own default: no line, which every release
    # takes (from 2.9.12 on, `nats-server -t` refuses any consumer_replicas line).
    one_copy = spec.consumer_copies() == 1 and spec.replicas > 1
    (keep if one_copy else drop).append(SECTION_ONE_COPY)
    text = keep_sections(text, keep, drop)
    header, sep, body = text.partition("\n\n")  # the leading comment block
    body = re.sub(r"\n{3,}", "\n\n", substitute(body, spec.values()))
    return header + sep + body


def check_operator_password(password: str) -> str:
    """A password that is not trivially guessed and that bcrypt reads whole."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise NatsKitError(f"the operator password has {len(password)} characters; "
                           f"at least {MIN_PASSWORD_CHARS} are needed")
    if len(password.encode("utf-8")) > BCRYPT_MAX_BYTES:
        raise NatsKitError(f"the operator password has {len(password.encode('utf-8'))} "
                           f"bytes in UTF-8; bcrypt reads at most {BCRYPT_MAX_BYTES}")
    bad = sorted({c for c in password if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise NatsKitError("the operator password may not contain newlines or other "
                           f"control characters (found {bad!r})")
    return password


def hash_operator_password(password: str) -> str:
    """The bcrypt hash users.conf holds (a new salt each time: every node may hold its
    own hash of the same password)."""
    try:
        import bcrypt
    except ImportError as exc:  # the desk's extra; a terminal never renders users.conf
        raise NatsKitError("hashing the operator password needs the bcrypt package: "
                           "pip install 'kiosk-agent[desk]'") from exc
    salt = bcrypt.gensalt(BCRYPT_COST, prefix=BCRYPT_VARIANT)
    return bcrypt.hashpw(check_operator_password(password).encode("utf-8"), salt).decode()


def render_users(terminal_ids: Iterable[str], template: str | None = None,
                 operator_password: str | None = None) -> str:
    """users.conf: the desk user, one copy of the terminal block per terminal id, and the
    operator user (client port only, a bcrypt hash of `operator_password`) when given."""
    text = template if template is not None else (SHIPPED / USERS).read_text(encoding="utf-8")
    if operator_password is None:
        text = keep_sections(text, (), (SECTION_OPERATOR,))
    else:
        op = _section(SECTION_OPERATOR).search(text)
        if op is None:
            raise NatsKitError(f"{USERS}: no '# begin: {SECTION_OPERATOR}' section")
        hashed = hash_operator_password(operator_password)
        body = substitute(op.group(1), {OPERATOR_PASSWORD: hashed})  # the section only
        text = text[:op.start()] + body + text[op.end():]
    m = _section(SECTION_TERMINAL).search(text)
    if m is None:
        raise NatsKitError(f"{USERS}: no '# begin: {SECTION_TERMINAL}' section")
    blocks = []
    seen: set[str] = set()
    for tid in terminal_ids:
        if tid == DESK_IDENTITY or not topics.valid_terminal_id(tid):
            raise NatsKitError(f"{tid[:40]!r} is not a terminal id (1-32 letters, digits or '-')")
        if tid in seen:
            raise NatsKitError(f"terminal id {tid} is listed twice")
        seen.add(tid)
        blocks.append(m.group(1).replace("@ID@", tid))
    return text[:m.start()] + "".join(blocks) + text[m.end():]


def tls_files(kit: Kit, conf_dir: Path) -> None:
    """The server certificate and key from a broker kit, and one CA file with both the
    terminal and the desk CA (NATS's MQTT listener takes one ca_file)."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    for name in (SERVER_CERT, SERVER_KEY):
        shutil.copyfile(kit.dir / name, conf_dir / name)
        (conf_dir / name).chmod((kit.dir / name).stat().st_mode & 0o777)
    (conf_dir / CLIENTS_CA).write_bytes(kit.terminal_ca.read_bytes() + kit.desk_ca.read_bytes())


def _server(value: str) -> tuple[str, int]:
    """argparse type for --server: HOST:PORT, or HOST for the default client port."""
    return _host_port(value, CLIENT_PORT)


def _monitor(value: str) -> tuple[str, int]:
    """argparse type for --monitor: HOST:PORT, or HOST for the default monitoring port."""
    return _host_port(value, MONITOR_PORT)


def _host_port(value: str, default: int) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, str(default)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def _read_password(path: str) -> str:
    """The first line of a file (so the password never shows in `ps` or shell history)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return lines[0] if lines else ""


def reset_sessions(admin: NatsAdmin, dry_run: bool) -> list[str]:
    """Delete RESET_STREAMS that exist (or only say so with `dry_run`); one line each."""
    present = set(admin.stream_names())
    lines = []
    for name in RESET_STREAMS:
        if name not in present:
            lines.append(f"{name}: not present")
        elif dry_run:
            lines.append(f"{name}: would delete")
        elif admin.delete_stream(name):
            lines.append(f"{name}: deleted")
        else:  # gone between the list and the delete (another operator, a node)
            lines.append(f"{name}: not present")
    if dry_run:
        lines.append("dry run: nothing deleted. Without --dry-run the streams above are "
                     "deleted; then restart the nodes one at a time.")
    else:
        lines.append("now restart the nodes one at a time (each back and accepting MQTT "
                     "before the next); terminals resend everything the desk has not "
                     "acknowledged.")
    return lines


def consumers(monitors: list[tuple[str, int]], timeout: float,
              fail_at: float | None = None) -> int:
    """Print the census; 0: no leftovers, 3: leftovers, 4: the consumers take `fail_at`
    percent of the stream's limit or more, 1: no node answered."""
    views, failed = read_views(monitors, timeout)
    for line in failed:
        print(f"nats_kit: {line}", file=sys.stderr)
    if not views:
        print("nats_kit: no node answered on its monitoring port: nothing counted",
              file=sys.stderr)
        return 1
    census = consumer_census(views)
    asked = f"{len(views)} of {len(monitors)} nodes answering"
    print(census.line(f"({asked})"))
    near = fail_at is not None and census.limit is not None and \
        census.used_percent >= fail_at
    if near:
        print(f"nats_kit: {census.consumers} consumers take {census.used_percent:.1f}% of "
              f"the stream's limit of {census.limit} (alarm at {fail_at:g}%): past the "
              f"limit new MQTT subscriptions are refused; remove leftovers "
              f"(prune-consumers, else reset-sessions) or raise default_max_consumers "
              f"(node --max-consumers) before then; docs/fleet.md \"Leftover consumers\"",
              file=sys.stderr)
    if census.extra == 0:
        return 4 if near else 0
    print(f"{census.extra} leftover consumers: each counts against the stream's consumer "
          f"limit (default_max_consumers on NATS 2.15) and keeps undelivered copies on the "
          f"nodes. prune-consumers deletes them one by one, sessions kept (those of "
          f"terminals connected nowhere where the session's record tells); "
          f"reset-sessions removes all with the sessions (terminals resend what the desk "
          f"has not acknowledged); docs/fleet.md \"Leftover consumers\"")
    return 4 if near else 3


def terminal(terminal_id: str, monitors: list[tuple[str, int]], timeout: float,
             light_session: bool = False) -> int:
    """Print what the nodes hold for one terminal; 0: every downlink subscription can
    deliver, 3: one cannot, 1: no node answered."""
    views, failed = read_views(monitors, timeout)
    connections, failed_connz = read_connections(monitors, terminal_id, timeout)
    for line in failed + failed_connz:
        print(f"nats_kit: {line}", file=sys.stderr)
    if not views or not connections:
        print("nats_kit: no node answered on its monitoring port: nothing to say",
              file=sys.stderr)
        return 1
    probe = probe_terminal(terminal_id, views, connections, light_session)
    print("\n".join(probe.lines()))
    if not probe.silent:
        return 0
    print(f"terminal {terminal_id} cannot hear the desk on every subscription: its ack "
          f"watch starts the session afresh once its payments wait [mqtt] ack_stall_s for "
          f"an ack (docs/fleet.md \"A terminal that hears nothing\")")
    return 3


def survey_leftovers(monitors: list[tuple[str, int]], timeout: float, min_age_s: float,
                     err: TextIO, admin: Callable[[], NatsAdmin] | None = None,
                     records_optional: bool = False) -> LeftoverSurvey | None:
    """One read of every node (consumers, then connections), then, through `admin` (the
    client port, opened only when needed), the records of the sessions connected nowhere;
    None, with one line each on `err`, when a node did not answer: a terminal on that
    node would look connected nowhere, and its consumers' own node may hold the only copy.
    Records that cannot be read raise NatsAdminError, or with `records_optional` (a dry
    run) leave those sessions' consumers alone, with one line on `err`."""
    views, failed = read_views(monitors, timeout)
    subscribed, failed_connz = read_subscribed(monitors, timeout)
    for line in failed + failed_connz:
        print(f"nats_kit: {line}", file=err)
    if failed or failed_connz:
        print("nats_kit: every node must answer on its monitoring port: nothing deleted",
              file=err)
        return None
    now = datetime.now(UTC)
    survey = find_leftovers(views, subscribed, now, min_age_s)
    if admin is not None and survey.offline_groups:
        try:
            records = read_session_records(admin(), survey.sessions())
        except NatsAdminError as exc:
            if not records_optional:
                raise
            print(f"nats_kit: {exc}; the sessions' records unread: consumers of terminals "
                  f"connected nowhere left alone", file=err)
        else:
            survey = survey.with_records(records, now, min_age_s)
    return survey


def read_session_records(admin: NatsAdmin, sessions: Iterable[str]
                         ) -> dict[str, SessionRecord | None]:
    """Each session's last record in $MQTT_sess (None: none, or a hash NATS does not make)."""
    records: dict[str, SessionRecord | None] = {}
    for session in sorted(sessions):
        subject = session_subject(session)
        records[session] = (parse_session_record(admin.last_message(SESSION_STREAM, subject))
                            if subject is not None else None)
    return records


def prune_consumers(monitors: list[tuple[str, int]], timeout: float,
                    open_admin: Callable[[], NatsAdmin], dry_run: bool,
                    min_age_s: float = MIN_AGE_S, confirm_after_s: float = CONFIRM_AFTER_S,
                    out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Delete the leftovers two reads `confirm_after_s` apart agree on (or only list
    them with `dry_run`); 0 done, 1 a node did not answer or the client port refused (one
    line on `err`). The client port is opened only to read sessions' records and to
    delete. Lines go to `out` and `err` (stdout and stderr unless given: the benchmark
    keeps them)."""
    out, err = out or sys.stdout, err or sys.stderr
    with _ClientPort(open_admin) as port:
        try:
            return _prune(monitors, timeout, port, dry_run, min_age_s, confirm_after_s,
                          out, err)
        except NatsAdminError as exc:
            print(f"nats_kit: {exc}", file=err)
            return 1


class _ClientPort:
    """The client connection prune-consumers opens once, when first needed; a refusal is
    not tried again (one line for the operator, not one per use)."""

    def __init__(self, open_admin: Callable[[], NatsAdmin]) -> None:
        self._open = open_admin
        self._stack = contextlib.ExitStack()
        self._admin: NatsAdmin | None = None
        self._refusal: NatsAdminError | None = None

    def __enter__(self) -> _ClientPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def admin(self) -> NatsAdmin:
        if self._refusal is not None:
            raise self._refusal
        if self._admin is None:
            try:
                self._admin = self._stack.enter_context(self._open())
            except NatsAdminError as exc:
                self._refusal = exc
                raise
        return self._admin

    def reader(self) -> Callable[[], NatsAdmin] | None:
        """What survey_leftovers reads the records with: nothing once refused."""
        return None if self._refusal is not None else self.admin


def _prune(monitors: list[tuple[str, int]], timeout: float, port: _ClientPort,
           dry_run: bool, min_age_s: float, confirm_after_s: float, out: TextIO,
           err: TextIO) -> int:
    admin = port.admin
    first = survey_leftovers(monitors, timeout, min_age_s, err, port.reader(), dry_run)
    if first is None:
        return 1
    survey = first
    if first.leftovers:
        time.sleep(confirm_after_s)
        second = survey_leftovers(monitors, timeout, min_age_s, err, port.reader(), dry_run)
        if second is None:
            return 1
        survey = first.confirmed_by(second)
    deleted = gone = 0
    if dry_run:
        for leftover in survey.leftovers:
            print(f"would delete {leftover.line()}", file=out)
    elif survey.leftovers:
        for leftover in survey.leftovers:
            if admin().delete_consumer(MQTT_MSGS_STREAM, leftover.name):
                deleted += 1
                print(f"deleted {leftover.line()}", file=out)
            else:  # removed meanwhile (NATS, another operator)
                gone += 1
                print(f"gone already {leftover.line()}", file=out)
    pending = sum(x.pending for x in survey.leftovers)
    done = (f"{len(survey.leftovers)} leftover consumers would be deleted" if dry_run else
            f"{deleted} leftover consumers deleted" + (f", {gone} gone already" if gone
                                                         else ""))
    print(f"{done} ({pending} messages pending on them, never to be pushed); "
          f"{survey.offline} subscriptions with leftovers whose terminal is connected "
          f"nowhere and whose session's record does not tell which is its own, left (run "
          f"again once they are back); {survey.unjudged} consumers not judged (made less "
          f"than {min_age_s:g} s ago or after their session's record, at no time the node "
          f"gives, or named unlike NATS's own)", file=out)
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m sync.nats_kit",
                                 description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="op", required=True)
    u = sub.add_parser("users", help="users.conf from a file of terminal ids")
    u.add_argument("--ids", required=True, help="one terminal id a line")
    u.add_argument("--out", required=True)
    u.add_argument("--operator-password-file",
                   help=f"add the {OPERATOR_USER} user (client port, reset-sessions only) "
                        f"with the password on this file's first line")
    n = sub.add_parser("node", help="one node's configuration plus its TLS files")
    n.add_argument("--kit", required=True, help="the folder of 'kiosk broker-kit init'")
    n.add_argument("--name", required=True)
    n.add_argument("--routes", default="", help="the other nodes, host:port,host:port")
    n.add_argument("--mqtt", default="0.0.0.0:8883")
    n.add_argument("--store", default="/var/lib/nats/kiosk")
    n.add_argument("--conf-dir", default="/etc/nats/kiosk")
    n.add_argument("--consumer-replicas", type=int, default=None,
                   help="1, or the streams' replicas (default); docs/fleet.md explains")
    n.add_argument("--max-consumers", type=int, default=None,
                   help=f"NATS 2.15 and later only: consumers per stream, four per terminal "
                        f"and more ({FLEET_MAX_CONSUMERS} serves 200,000); without it the "
                        f"node.conf line is left out, as NATS 2.9-2.14 need")
    n.add_argument("--mqtt-api-timeout", type=int, default=None, metavar="SECONDS",
                   help=f"NATS 2.11.3 and later only: how long an MQTT CONNECT or "
                        f"SUBSCRIBE may wait for JetStream (NATS's default 5; "
                        f"{FLEET_MQTT_API_TIMEOUT_S} measured better near capacity, at the "
                        f"cost of a node's MQTT starting that much later); without it the "
                        f"line is left out")
    n.add_argument("--for-version", metavar="VERSION",
                   help="the nodes' nats-server release (2.15.1, or what `nats-server "
                        "--version` prints): keeps what it needs, refuses what it "
                        "does not take")
    n.add_argument("--out", required=True)
    # the options of the commands that use the JetStream API on a node's client port
    adm = argparse.ArgumentParser(add_help=False)
    adm.add_argument("--server", required=True, type=_server,
                     help=f"a node's NATS client port, HOST:PORT (127.0.0.1:{CLIENT_PORT})")
    adm.add_argument("--user", default=None,
                     help=f"with --password-file; default {OPERATOR_USER}")
    adm.add_argument("--password-file", help="the operator password on its first line")
    adm.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    r = sub.add_parser("reset-sessions", parents=[adm],
                       help=f"delete the MQTT session streams ({', '.join(RESET_STREAMS)}) "
                            f"after a full-cluster loss")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds to wait for each answer (default %(default)s)")
    # the options of the commands that read the nodes' monitoring ports
    mon = argparse.ArgumentParser(add_help=False)
    mon.add_argument("--monitor", required=True, action="append", type=_monitor,
                     help=f"a node's monitoring port, HOST:PORT or HOST (port "
                          f"{MONITOR_PORT}); once per node, so that one-copy consumers "
                          f"are all seen")
    mon.add_argument("--timeout", type=float, default=JSZ_TIMEOUT_S,
                     help="seconds to wait for each node (default %(default)s)")
    c = sub.add_parser("consumers", parents=[mon],
                       help="count the MQTT subscriptions' JetStream consumers and the "
                            "leftovers a full-cluster restart can leave (the nodes' /jsz)")
    c.add_argument("--fail-at", type=float, default=None, metavar="PERCENT",
                   help="exit 4 when the consumers take this share of the stream's "
                        "consumer limit or more (NATS 2.15 and later apply one); the "
                        "shipped timer, deploy/systemd/kiosk-nats-census.timer, uses 80")
    t = sub.add_parser("terminal", parents=[mon],
                       help="one terminal's connection and its downlink subscriptions' "
                            "consumers: can each deliver? (the nodes' /connz and /jsz)")
    t.add_argument("terminal_id", help="the terminal's id, its MQTT client id")
    t.add_argument("--light-session", action="store_true",
                   help="the terminal runs with [mqtt] light_session (ack and config at "
                        "QoS 0: no consumer expected for them)")
    pr = sub.add_parser("prune-consumers", parents=[mon, adm],
                        help="delete leftover consumers one by one, sessions kept (the nodes' "
                             "/jsz and /connz decide; for terminals connected nowhere, their "
                             "sessions' records in $MQTT_sess)")
    pr.add_argument("--min-age", type=float, default=MIN_AGE_S, metavar="SECONDS",
                    help="judge only consumers made this long ago or longer "
                         "(default %(default)s)")
    pr.add_argument("--confirm-after", type=float, default=CONFIRM_AFTER_S,
                    metavar="SECONDS", help="read the nodes again after this long; delete "
                                            "only what both reads find (default %(default)s)")
    args = ap.parse_args(argv)
    if getattr(args, "timeout", 1.0) <= 0:  # the commands that reach a node
        ap.error("--timeout must be above 0")
    if args.op in ("reset-sessions", "prune-consumers") and \
            args.user is not None and args.password_file is None:
        ap.error("--user needs --password-file")
    if args.op == "terminal":
        if not topics.valid_terminal_id(args.terminal_id):
            ap.error(f"terminal id {args.terminal_id!r}: letters, digits and '-', 1-32")
        return terminal(args.terminal_id, args.monitor, args.timeout, args.light_session)
    if args.op == "consumers":
        if args.fail_at is not None and not 0 < args.fail_at <= 100:
            ap.error("--fail-at must be a percentage above 0, at most 100")
        return consumers(args.monitor, args.timeout, args.fail_at)
    if args.op == "prune-consumers" and (args.min_age < 0 or args.confirm_after < 0):
        ap.error("--min-age and --confirm-after must be 0 or more seconds")
    try:
        if args.op == "users":
            ids = [ln.strip() for ln in Path(args.ids).read_text(encoding="utf-8").splitlines()
                   if ln.strip() and not ln.startswith("#")]
            password = (_read_password(args.operator_password_file)
                        if args.operator_password_file else None)
            Path(args.out).write_text(render_users(ids, operator_password=password),
                                      encoding="utf-8")
            who = f" (and {OPERATOR_USER})" if password is not None else ""
            print(f"{args.out}: the desk and {len(ids)} terminals{who}")
            return 0
        if args.op in ("reset-sessions", "prune-consumers"):
            host, port = args.server
            user = password = None
            if args.password_file is not None:
                user, password = args.user or OPERATOR_USER, _read_password(args.password_file)
            if args.op == "prune-consumers":
                return prune_consumers(
                    args.monitor, args.timeout,
                    lambda: NatsAdmin(host, port, user, password, DEFAULT_TIMEOUT_S),
                    args.dry_run, args.min_age, args.confirm_after)
            with NatsAdmin(host, port, user, password, args.timeout) as admin:
                for line in reset_sessions(admin, args.dry_run):
                    print(line)
            return 0
        routes = tuple(r for r in args.routes.split(",") if r)
        conf_dir = Path(args.conf_dir)
        spec = NodeSpec(args.name, f"127.0.0.1:{CLIENT_PORT}", f"127.0.0.1:{MONITOR_PORT}",
                        Path(args.store), args.mqtt, replicas=3 if routes else 1, routes=routes,
                        conf_dir=conf_dir, consumer_replicas=args.consumer_replicas,
                        max_consumers=args.max_consumers,
                        mqtt_api_timeout_s=args.mqtt_api_timeout)
        said: list[str] = []
        if args.for_version is not None:
            spec, said = fit_to_version(spec, args.for_version)
        text = render_node(spec)
        tls_files(Kit(Path(args.kit)), conf_dir)  # makes conf_dir, where --out usually is
        Path(args.out).write_text(text, encoding="utf-8")
        for line in said:
            print(line)
        if spec.mqtt_api_timeout_s is not None:
            print(connect_timeout_advice(spec.mqtt_api_timeout_s))
        print(f"{args.out}: node {args.name}; TLS files in {conf_dir}; check it with "
              f"nats-server -t -c {args.out} once users.conf is beside it")
        return 0
    except (NatsKitError, NatsAdminError, OSError, UnicodeDecodeError) as exc:
        print(f"nats_kit: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
