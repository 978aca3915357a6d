"""`kiosk keys` (terminal keys and CSR) and `kiosk desk` (a minimal desk-side tool).

    kiosk keys [-c CONFIG] [--dir DIR] [--terminal ID]
    kiosk desk keygen --dir DIR [--name desk]
    kiosk desk [connection options] watch [--for S]
    kiosk desk [connection options] cmd TERMINAL TYPE [--arg k=v …] [--ttl S] [--wait S]
    kiosk desk [connection options] config TERMINAL --version N [--support-phone P] [--file F]
    kiosk desk [connection options] status TERMINAL PAYMENT_ID processed|failed [--detail D]
    kiosk desk [connection options] serve [--status-file F] [--health-interval S]
    kiosk desk serve --status --status-file F
    kiosk desk [--db DB] find QUERY [--terminal T] [--amount 500] [--since T] [--until T]
    kiosk desk [--db DB] quarantine | conflicts | migrate
    kiosk desk [connection options] serve --http 127.0.0.1:8080    # + the operator's page
    kiosk desk [--db DB] operator add --login L --role viewer|operator|admin  # password: stdin
    kiosk desk [--db DB] operator list | lock --login L | unlock --login L

Connection options: --host, --port, --key (desk Ed25519 key), --terminal-keys (folder of
<terminal id>.pub), --db (the desk's database: a SQLite file, or a postgresql:// URL;
default $KIOSK_DESK_DB, else desk/desk.sqlite), --tls-ca/--tls-cert/--tls-key.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sync import topics
from sync.desk_beat import DEFAULT_EVERY_S as DEFAULT_BEAT_S
from sync.desk_beat import every_problem
from sync.desk_service.actions import (  # one path for the CLI and the page
    EXIT_NO_BROKER,
    EXIT_NOT_DELIVERED,
    EXIT_OK,
    EXIT_QUEUED,
    EXIT_REFUSED,
    reprocess_cmd_id,
)
from sync.desk_service.takeover import DEFAULT_TAKEOVER_AFTER_S
from sync.keys import (
    KeyError_,
    create_terminal_keys,
    key_id,
    load_signing_key,
    public_b64,
    write_signing_key,
)

if TYPE_CHECKING:  # imported lazily at run time: the desk is not needed by every command
    from sync.desk import Desk
    from sync.desk_service.db import DeskDB

DESK_KEY = "desk.ed25519.key"
DEFAULT_DB = "desk/desk.sqlite"


def keys_main(folder: str | None, terminal_id: str | None, config: Any) -> int:
    from sync.agent import signing_key_path

    directory = Path(folder) if folder else signing_key_path(config).parent
    terminal = terminal_id or config.terminal.id
    if not topics.valid_terminal_id(terminal):
        print(f"kiosk keys: {terminal[:40]!r} is not a terminal id (1-32 letters, digits or "
              "'-'); the certificate's CN is the broker identity", file=sys.stderr)
        return 1
    try:
        keys = create_terminal_keys(directory, terminal)
    except KeyError_ as exc:
        print(f"kiosk keys: {exc}", file=sys.stderr)
        return 1
    print(f"signing key   {keys.signing_key} (Ed25519, 0600)")
    print(f"public key    {keys.signing_pub}  ->  give to the desk as {terminal}.pub")
    print(f"key id        {keys.key_id}")
    print(f"public (b64)  {keys.public_b64}")
    print(f"TLS key       {keys.tls_key} (EC P-256, 0600)")
    print(f"CSR           {keys.csr} (CN={terminal})  ->  to the CA (kiosk broker-kit sign); "
          "never the keys")
    return 0


__all__ = ["EXIT_NOT_DELIVERED", "EXIT_OK", "EXIT_QUEUED", "EXIT_REFUSED", "desk_main"]


def _client_id(args: argparse.Namespace, role: str) -> str:
    """Each desk process its own client id: two tools never kick each other off."""
    return args.client_id or f"desk-{role}-{socket.gethostname()[:20]}-{os.getpid()}"


def _desk(args: argparse.Namespace, consume: bool, db: Any = None, **kw: Any) -> Desk:
    from sync.desk import SHARE_GROUP, Desk, describe, load_terminal_keys

    key_path = Path(args.key)
    key = load_signing_key(key_path)
    kid_file = key_path.with_suffix(".kid")
    kid = kid_file.read_text().strip() if kid_file.exists() else key_id("desk", key.public_key())
    terminal_keys = load_terminal_keys(Path(args.terminal_keys)) if args.terminal_keys else {}
    tls = None
    if args.tls_ca:
        tls = (Path(args.tls_ca), Path(args.tls_cert), Path(args.tls_key))
    endpoints = _endpoints(args.hosts, args.port)
    partition = _partition(args.partition) if consume else None

    def report(terminal: str, leaf: str, value: Any) -> None:
        print(describe(terminal, leaf, value), flush=True)

    return Desk(
        args.host,
        args.port,
        key,
        kid,
        terminal_keys,
        db if db is not None else args.db,
        client_id=_client_id(args, args.op),
        tls=tls,
        on_report=report if consume else None,
        consume=consume,
        persistent=False,  # nothing left at the broker: terminals resend what is unacked
        share_group=SHARE_GROUP if consume else None,
        protocol=args.protocol,
        endpoints=endpoints,
        partition=partition,
        takeover_after_s=_takeover_after(args.takeover_after) if partition else 0.0,
        connect_timeout_s=_connect_timeout(args.connect_timeout),
        beat_s=_beat(args.beat) if consume else 0.0,
        **kw,
    )


def _endpoints(hosts: str, default_port: int) -> tuple[Any, ...]:
    """`--hosts a:8884,b:8884`: a cluster's nodes (the desk listener of each)."""
    from sync.connection import parse_endpoint

    if not hosts:
        return ()
    try:
        return tuple(parse_endpoint(h, default_port) for h in hosts.split(",") if h.strip())
    except ValueError as exc:
        raise KeyError_(f"--hosts: {exc}") from exc


def _takeover_after(seconds: float) -> float:
    """`--takeover-after S`: 0 turns takeover off (a partition waits for its worker)."""
    if not 0 <= seconds < math.inf:  # also NaN
        raise KeyError_(f"--takeover-after {seconds}: give seconds >= 0 (0: never)")
    return seconds


def _connect_timeout(seconds: float | None) -> float:
    """`--connect-timeout S`: one attempt's TCP + TLS, then its wait for CONNACK."""
    from sync.connection import ConnSettings

    if seconds is None:
        return ConnSettings.connect_timeout_s
    if not 0 < seconds < math.inf:  # also NaN
        raise KeyError_(f"--connect-timeout {seconds}: give a positive number of seconds")
    return seconds


def _beat(seconds: float) -> float:
    """`--beat S`: the desk beat's period (sync/desk_beat.py); 0: no beat."""
    why = every_problem(seconds)
    if why:
        raise KeyError_(f"--beat {seconds}: {why}")
    return seconds


def _partition(text: str) -> tuple[int, int] | None:
    """`--partition K/N`: this worker takes the terminals with crc32(id) % N == K."""
    if not text:
        return None
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not int(k) < int(n):
        raise KeyError_(f"--partition {text!r}: give K/N with 0 <= K < N, e.g. 0/3")
    return int(k), int(n)


_reprocess_cmd_id = reprocess_cmd_id  # its former name


def _run_cmd(desk: Any, args: argparse.Namespace) -> int:
    from sync.desk_service.actions import result_text, run_command

    cmd_args: dict[str, Any] = {}
    for item in args.arg:
        k, sep, v = item.partition("=")
        if not sep:
            print(f"refused: bad_args: --arg {item!r} is not key=value", file=sys.stderr)
            return EXIT_REFUSED
        cmd_args[k] = v
    if args.type in ("reprocess", "reprocess_unclaimed") and "account" in cmd_args:
        # the account as the customer reads it out ("8 916 …"), kept as the page keeps it
        from sync.desk_service.search import corrected_account

        ref = cmd_args.get("payment_id") or cmd_args.get("record_id") or ""
        previous = desk.store.latest_account(args.terminal, ref) if ref else None
        account = corrected_account(cmd_args["account"], previous)
        if account is None:
            print(f"refused: bad_args: account {cmd_args['account'][:40]!r}: digits only",
                  file=sys.stderr)
            return EXIT_REFUSED
        cmd_args["account"] = account
    if args.type == "reprocess" and "reprocess_count" in cmd_args:
        # explicit: "the payment is at this count" (compare-and-set on the terminal);
        # without it, re-processing again to the account of the latest one runs nothing
        cmd_args["reprocess_count"] = int(cmd_args["reprocess_count"])
    out = run_command(desk, args.terminal, args.type, cmd_args, args.ttl, args.wait)
    if out.kind in ("queued",):
        print(out.message)
    elif out.kind == "not_delivered":
        print(out.message, file=sys.stderr)
    else:
        print(out.message)
        print(result_text(out))
    return out.code


def _days(text: str) -> int:
    """A retention in whole days (argparse type): a clear refusal, not a traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} days: must be 0 (keep) or more")
    return value


def desk_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="kiosk desk",
        description="a minimal desk-side tool",
        epilog="cmd exit codes: 0 executed, 1 refused (code and reason printed), 2 queued at "
        "the broker but not executed yet, 3 no broker, 4 not delivered",
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--key", default=f"desk/{DESK_KEY}", help="the desk's Ed25519 key")
    ap.add_argument("--terminal-keys", help="folder of <terminal id>.pub files")
    ap.add_argument("--db", default=os.environ.get("KIOSK_DESK_DB", DEFAULT_DB),
                    help="the desk's database: a SQLite file or a postgresql:// URL "
                    "(default: $KIOSK_DESK_DB, else %(default)s)")
    ap.add_argument("--client-id", default="", help="default: desk-<op>-<host>-<pid>")
    ap.add_argument("--protocol", choices=["5", "3.1.1"], default="5",
                    help="MQTT level; 3.1.1 for a NATS cluster (no shared subscriptions)")
    ap.add_argument("--hosts", default="",
                    help="a cluster's nodes, host:port,host:port (replaces --host/--port)")
    ap.add_argument("--partition", default="",
                    help="K/N: store only terminals with crc32(id) %% N == K (MQTT 3.1.1)")
    ap.add_argument("--takeover-after", type=float, default=DEFAULT_TAKEOVER_AFTER_S,
                    metavar="SECONDS",
                    help="with --partition: also take a share of a partition whose worker "
                    "has sent no heartbeat for this long, until it is back (0: never; "
                    "default %(default)s)")
    ap.add_argument("--connect-timeout", type=float, default=None, metavar="SECONDS",
                    help="one connect attempt: TCP and TLS, then again the wait for CONNACK "
                    "(above a NATS node's MQTT js_api_timeout; default: the agent's, 10)")
    ap.add_argument("--beat", type=float, default=DEFAULT_BEAT_S, metavar="SECONDS",
                    help="a consuming desk publishes its signed beat this often, so the "
                    "terminals' ack watch tells a desk that is away from a lost session "
                    "(0: no beat; default %(default)s)")
    ap.add_argument("--tls-ca")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    sub = ap.add_subparsers(dest="op", required=True)
    kg = sub.add_parser("keygen", help="create the desk's signing key")
    kg.add_argument("--dir", default="desk")
    kg.add_argument("--name", default="desk")
    w = sub.add_parser("watch", help="consume, acknowledge and print what terminals report")
    w.add_argument("--for", dest="seconds", type=float, default=0.0, help="0 = until Ctrl-C")
    c = sub.add_parser("cmd", help="sign and send a command, print its result")
    c.add_argument("terminal")
    c.add_argument("type")
    c.add_argument("--arg", action="append", default=[], help="key=value (repeatable)")
    c.add_argument("--ttl", type=float, default=300.0)
    c.add_argument("--wait", type=float, default=15.0)
    cf = sub.add_parser("config", help="publish a signed, retained config document")
    cf.add_argument("terminal", help="terminal id (the document says '*': any terminal)")
    cf.add_argument("--version", type=int, required=True)
    cf.add_argument("--support-phone")
    cf.add_argument("--file", help="JSON with more fields (catalog, commissions, …)")
    st = sub.add_parser("status", help="report a payment processed or failed")
    st.add_argument("terminal")
    st.add_argument("payment_id")
    st.add_argument("status", choices=["processed", "failed"])
    st.add_argument("--detail")
    st.add_argument("--reprocess-count", type=int, help="default: the newest the desk holds")
    sub.add_parser("conflicts", help="records whose id repeats with different content")
    sv = sub.add_parser("serve", help="a long-running desk worker (run several: they share "
                        "the load); docs/desk.md")
    sv.add_argument("--status-file", help="where the worker writes its health (JSON)")
    sv.add_argument("--status", action="store_true",
                    help="print the status a worker wrote and exit: 0 ok, 1 degraded or "
                    "stopped, 2 none or too old")
    sv.add_argument("--health-interval", type=float, default=30.0,
                    help="seconds between health lines (log and status file)")
    sv.add_argument("--keep-health-days", type=_days, default=30, metavar="DAYS",
                    help="delete health reports older than this (0 = keep; default 30)")
    sv.add_argument("--keep-quarantine-days", type=_days, default=90, metavar="DAYS",
                    help="delete quarantined messages older than this (0 = keep; default 90)")
    sv.add_argument("--ack-delay", type=float, default=0.0, help=argparse.SUPPRESS)  # tests
    sv.add_argument("--http", metavar="HOST:PORT",
                    help="also serve the operator's page here, e.g. 127.0.0.1:8080 "
                    "(plain HTTP: put a TLS proxy in front, docs/desk.md)")
    sv.add_argument("--secure-cookies", action="store_true",
                    help="mark the page's cookies Secure (behind an HTTPS proxy)")
    sv.add_argument("--trust-proxy", action="store_true",
                    help="take the client address from X-Forwarded-For (behind a proxy)")
    op = sub.add_parser("operator", help="accounts of the desk page: add, list, lock, unlock")
    op.add_argument("action", choices=["add", "list", "lock", "unlock"])
    op.add_argument("--login")
    op.add_argument("--role", default="viewer", help="viewer, operator or admin")
    op.add_argument("--replace", action="store_true",
                    help="add: set a new password and role for an existing login")
    fd = sub.add_parser("find", help="find payments by payment id, account or phone (any "
                        "formatting, partial), terminal, amount, time")
    fd.add_argument("query", nargs="?", default="")
    fd.add_argument("--terminal")
    fd.add_argument("--amount", help="roubles, e.g. 500 or 499.50 (inserted or credited)")
    fd.add_argument("--since", help="UTC time (2026-12-03, 2026-12-03T10:00) or an age: 2h, 3d")
    fd.add_argument("--until", help="as --since (exclusive)")
    fd.add_argument("--limit", type=int, default=50)
    fd.add_argument("--json", action="store_true", help="one JSON object per line")
    sub.add_parser("quarantine", help="messages the desk could not take, with the reason")
    for name, what in (("offers", "offers shown and taps, against the holdout"),
                       ("funnel", "per day: sessions reaching each screen and leaving it")):
        sub.add_parser(name, help=what).add_argument("--terminal")
    sub.add_parser("migrate", help="bring the desk database schema up to date")
    hp = sub.add_parser("help", help="what the customer with this help code sees now "
                        "(read-only; docs/self-service.md)")
    hp.add_argument("code", help="the help code the customer reads out, e.g. T0001-4821")
    hs = sub.add_parser("help-stats", help="help center metrics: sessions, call-backs, "
                        "deflection, searches without result (JSON)")
    hs.add_argument("--terminal")
    args = ap.parse_args(argv)

    if args.op == "keygen":
        path = Path(args.dir) / DESK_KEY
        if path.exists():
            print(f"kiosk desk: {path} exists", file=sys.stderr)
            return 1
        key = write_signing_key(path)
        kid = key_id(args.name, key.public_key())
        path.with_suffix(".kid").write_text(kid + "\n")
        print(f"desk key {path}, key id {kid}")
        print("terminals pin it in their config:")
        print(f'[mqtt.desk_keys]\n"{kid}" = "{public_b64(key.public_key())}"')
        return 0

    if args.op == "serve" and args.status:
        from sync.desk_service.service import StatusFile, check

        if not args.status_file:
            print("kiosk desk serve --status: give --status-file", file=sys.stderr)
            return 2
        return check(StatusFile(Path(args.status_file)))
    if "://" not in args.db:
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    if args.op in ("find", "quarantine", "migrate", "operator", "offers", "funnel", "help",
                   "help-stats"):
        return _db_tool(args)
    if args.op == "serve":
        return _serve(args)
    if args.op == "conflicts":
        from sync.desk import DeskStore

        try:
            store = DeskStore(args.db)
        except Exception as exc:  # DeskDBError, SQLAlchemyError: said, not a traceback
            print(f"kiosk desk: database {_safe_url(args.db)}: {str(exc).splitlines()[0]}",
                  file=sys.stderr)
            return 1
        rows = store.conflicts()
        store.close()
        for r in rows:
            print(f"{r['terminal_id']} {r['kind']} {r['ref']} seq={r['seq']}")
            print(f"  held:     {r['stored']}")
            print(f"  received: {r['received']}")
        print(f"{len(rows)} conflict(s)")
        return 1 if rows else 0
    extra: dict[str, Any] = {}
    if args.op == "cmd":
        extra["results_for"] = args.terminal
    elif args.op == "config":
        extra["watch_configs"] = (args.terminal,)
    from sqlalchemy.exc import SQLAlchemyError

    from sync.desk_service.db import DeskDBError

    try:
        desk = _desk(args, consume=args.op == "watch", **extra)
    except (KeyError_, OSError) as exc:
        print(f"kiosk desk: {exc}", file=sys.stderr)
        return 1
    except (DeskDBError, SQLAlchemyError) as exc:
        print(f"kiosk desk: database {_safe_url(args.db)}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return 1
    with desk:
        if not desk.conn.wait_connected(10):
            print(f"kiosk desk: no broker at {args.host}:{args.port}", file=sys.stderr)
            return EXIT_NO_BROKER
        if args.op == "watch":
            deadline = time.monotonic() + args.seconds if args.seconds else None
            try:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            return 0
        if args.op == "cmd":
            return _run_cmd(desk, args)
        if args.op == "config":
            return _publish_config(desk, args)
        return _send_status(desk, args)


def _publish_config(desk: Any, args: argparse.Namespace) -> int:
    from sync import topics

    doc: dict[str, Any] = {}
    if args.file:
        doc.update(json.loads(Path(args.file).read_text(encoding="utf-8")))
    doc.update({"version": args.version, "terminal_id": doc.get("terminal_id", "*")})
    if args.support_phone:
        doc["support_phone"] = args.support_phone
    try:
        retained = desk.retained_config_version(args.terminal, 10)
    except TimeoutError as exc:
        print(f"kiosk desk: {exc}", file=sys.stderr)
        return EXIT_NO_BROKER
    published = desk.store.published_config(topics.topic(args.terminal, topics.CONFIG))
    newest = max(v for v in (retained, published, 0) if v is not None)
    if args.version <= newest:
        print(f"refused: stale_version: version {args.version} is not above {newest} "
              f"(retained at the broker: {retained}, published from here: {published}); "
              "a terminal starting now would load the older document", file=sys.stderr)
        return EXIT_REFUSED
    desk.publish_config(args.terminal, doc)
    return _await_puback(desk, f"config v{args.version} for {args.terminal}", retained=True)


def _send_status(desk: Any, args: argparse.Namespace) -> int:
    from sync.desk_service.actions import send_status

    out = send_status(desk, args.terminal, args.payment_id, args.status, args.detail,
                      args.reprocess_count)
    print(out.message, file=sys.stdout if out.ok else sys.stderr)
    return out.code


def _await_puback(desk: Any, what: str, retained: bool = False) -> int:
    from sync.desk_service.actions import await_puback

    out = await_puback(desk, what, retained)
    print(out.message, file=sys.stdout if out.ok else sys.stderr)
    return out.code


def _open_db(args: argparse.Namespace) -> DeskDB:
    from sync.desk_service.db import DeskDB

    return DeskDB(args.db)


def _db_tool(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from sync.desk_service.db import DeskDBError, current_revision

    try:
        store = _open_db(args)
    except (DeskDBError, SQLAlchemyError) as exc:
        print(f"kiosk desk: database {_safe_url(args.db)}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return 1
    try:
        if args.op == "migrate":
            print(f"desk database at revision {current_revision(store.engine)}")
            return 0
        if args.op == "operator":
            return _operator(store, args)
        if args.op in ("offers", "funnel"):
            from sync.desk_service import engagement as eng

            events = store.events(args.terminal)
            lines = (eng.format_offers(eng.offer_stats(events)) if args.op == "offers"
                     else eng.format_funnel(eng.funnel_days(events)))
            print("\n".join(lines) if lines else "no funnel reports yet")
            return 0
        if args.op in ("help", "help-stats"):
            return _help(store, args)
        if args.op == "quarantine":
            rows = store.quarantined()
            for r in rows:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["received_ms"] / 1000))
                print(f"{when} {r['topic']} {r['reason']}: {r['detail']} "
                      f"({r['size']} bytes, sha256 {r['sha256'][:16]}…)")
            print(f"{len(rows)} quarantined message(s)")
            return 1 if rows else 0
        return _find(store, args)
    finally:
        store.close()


def _help(store: Any, args: argparse.Namespace) -> int:
    from sync.help_desk import describe_help, help_metrics, help_view, terminal_of

    if args.op == "help-stats":
        print(json.dumps(help_metrics(store.events(args.terminal)), ensure_ascii=False))
        return 0
    tid = terminal_of(args.code)
    row = next((t for t in store.terminals() if t["terminal_id"] == tid), None)
    view = help_view(row.get("health") if row else None, args.code)
    if view is None:
        print(f"kiosk desk: no open help with code {args.code!r} (the customer closed the "
              "session, or the terminal's health has not arrived)", file=sys.stderr)
        return 1
    print(describe_help(view))
    return 0


def _read_password(login: str) -> str:
    """From the terminal (asked twice, not echoed) or one line of standard input."""
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass(f"password for {login}: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _operator(store: Any, args: argparse.Namespace) -> int:
    """`kiosk desk operator add|list|lock|unlock`: the page's accounts."""
    from sync.desk_service.operators import Operators, Role

    ops = Operators(store.engine)
    if args.action == "list":
        for r in ops.all():
            state = "LOCKED" if r["locked"] else (
                "locked out until " + time.strftime(
                    "%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["locked_until_ms"] / 1000))
                if r["locked_until_ms"] and r["locked_until_ms"] > time.time() * 1000 else "ok")
            print(f"{r['login']} {r['role']} {state}")
        return 0
    if not args.login:
        print(f"kiosk desk operator {args.action}: give --login", file=sys.stderr)
        return 2
    try:
        if args.action == "add":
            role = Role.parse(args.role)
            ops.add(args.login, _read_password(args.login), role, replace=args.replace)
            ops.audit(None, "cli", "operator_add", "ok", None, args.login, f"role {role.label}")
            print(f"operator {args.login} ({role.label}) saved")
            return 0
    except ValueError as exc:
        print(f"kiosk desk operator: {exc}", file=sys.stderr)
        return 1
    locked = args.action == "lock"
    if not ops.set_locked(args.login, locked):
        print(f"kiosk desk operator: no operator {args.login!r}", file=sys.stderr)
        return 1
    ops.audit(None, "cli", f"operator_{args.action}", "ok", None, args.login, None)
    print(f"operator {args.login} {'locked (sessions ended)' if locked else 'unlocked'}")
    return 0


def _safe_url(db: str) -> str:
    """The database named without its password (for messages)."""
    if "://" not in db:
        return db
    from sqlalchemy.engine import make_url

    return make_url(db).render_as_string(hide_password=True)


def _find(store: Any, args: argparse.Namespace) -> int:
    from sync.desk_service.search import Query, find_payments, parse_amount, parse_when

    try:
        q = Query(
            text=args.query, terminal_id=args.terminal,
            amount_minor=parse_amount(args.amount) if args.amount else None,
            since_ms=parse_when(args.since) if args.since else None,
            until_ms=parse_when(args.until) if args.until else None, limit=args.limit)
        if not (q.text.strip() or q.terminal_id or q.amount_minor is not None
                or q.since_ms is not None):
            raise ValueError("say what to find: a query, --terminal, --amount or --since")
        rows = find_payments(store.engine, q)
    except ValueError as exc:
        print(f"kiosk desk find: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        if args.json:
            print(json.dumps(r, ensure_ascii=False, sort_keys=True))
            continue
        when = (time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["created_ms"] / 1000))
                if r["created_ms"] else "?")
        amount = r["credited_minor"] if r["kind"] == "payment" else r["inserted_minor"]
        money = f"{amount // 100}.{amount % 100:02d}" if amount is not None else "?"
        again = f" (re-processed {r['reprocess_count']}x)" if r["reprocess_count"] else ""
        print(f"{when} {r['terminal_id']} {r['payment_id']}{again}"
              f" {r['kind']} {r['status']} {money} {r['currency'] or ''} "
              f"{r['provider_id'] or ''} {r['account'] or ''}")
    print(f"{len(rows)} found" + (" (limit reached: narrow the search)"
                                  if len(rows) >= args.limit else ""))
    return 0 if rows else 1


def _serve(args: argparse.Namespace) -> int:
    import logging

    from sqlalchemy.exc import SQLAlchemyError

    from sync.backoff import Backoff
    from sync.desk_service.db import DeskDBError, database_lost
    from sync.desk_service.retention import Retention
    from sync.desk_service.service import StatusFile, run

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    status = StatusFile(Path(args.status_file)) if args.status_file else None
    backoff = Backoff(0.5, 10.0)
    while True:  # the database may come up after the worker (boot order): wait for it
        try:
            store = _open_db(args)
            break
        except (DeskDBError, SQLAlchemyError) as exc:
            if not database_lost(exc):
                print(f"kiosk desk serve: database {_safe_url(args.db)}: "
                      f"{str(exc).splitlines()[0]}", file=sys.stderr)
                return 1
            reason = str(exc).splitlines()[0][:300]
            print(f"desk health: DEGRADED database {_safe_url(args.db)} unreachable "
                  f"({reason}); retrying", file=sys.stderr, flush=True)
            if status is not None:
                status.write({"state": "degraded", "error": reason, "held": 0,
                              "pid": os.getpid(), "updated_ms": int(time.time() * 1000),
                              "interval_s": args.health_interval, "since_ms": 0,
                              "broker_connected": False, "database": "?", "messages": 0,
                              "new_payments": 0, "duplicates": 0, "acks_sent": 0,
                              "quarantined": 0, "conflicts": 0})
            time.sleep(backoff.next_delay())
    try:
        desk = _desk(args, consume=True, db=store, ack_delay_s=args.ack_delay)
    except (KeyError_, OSError) as exc:
        store.close()
        print(f"kiosk desk: {exc}", file=sys.stderr)
        return 1
    from sync.desk import describe

    def report(terminal: str, leaf: str, value: Any) -> None:
        # a service logs what needs an operator, not every record (`watch` prints those)
        if leaf in ("quarantine", "conflict"):
            logging.getLogger("sync.desk.serve").warning("%s", describe(terminal, leaf, value))

    desk.on_report = report
    web = None
    if args.http:
        from sync.desk_service.web import DeskWeb

        host, _, port = args.http.rpartition(":")
        try:
            web = DeskWeb(store, desk, secure_cookies=args.secure_cookies,
                          trust_proxy=args.trust_proxy).start(host or "127.0.0.1", int(port))
        except (OSError, ValueError) as exc:
            desk.store.close()
            print(f"kiosk desk serve: --http {args.http}: {exc}", file=sys.stderr)
            return 1
        print(f"desk page at {web.url}/", file=sys.stderr, flush=True)
    try:
        return run(desk, status, args.health_interval,
                   retention=Retention(args.keep_health_days, args.keep_quarantine_days))
    finally:
        if web is not None:
            web.stop()
