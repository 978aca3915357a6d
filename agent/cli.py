"""The `kiosk` command: the core daemon, status and payments, technician diagnostics,
a scripted customer, device simulators and probing, and the demo."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from kiosk.api_client import ApiClient, ApiRequestError
from kiosk.config import Config, ConfigError, load_config

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def _config(args: argparse.Namespace) -> Config:
    path = getattr(args, "config", None)
    return load_config(Path(path) if path else None)


def _client(args: argparse.Namespace) -> ApiClient:
    socket_path = getattr(args, "socket", None) or _config(args).paths.socket
    client = ApiClient(socket_path)
    try:
        client.connect(subscribe=False)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise SystemExit(
            f"kiosk: the core is not running (no answer on {socket_path}): {exc.strerror}"
        ) from exc
    except PermissionError as exc:
        raise SystemExit(
            f"kiosk: no permission to use {socket_path}: run as the kiosk user or group"
        ) from exc
    return client


def _money(minor: int | None) -> str:
    if minor is None:
        return "-"
    return f"{minor // 100}.{minor % 100:02d}"


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True))


# The technician's refusals in both languages, worded from the core's code and data
# (docs/technician.md); any other refusal is shown with the core's own message.
_REFUSALS: dict[str, tuple[str, str]] = {
    "wrong_pin": ("неверный PIN, осталось попыток: {attempts_left}",
                  "wrong PIN; {attempts_left} attempt(s) left"),
    "locked": ("вход техника заблокирован после неверных PIN, повторите через {retry_after_s} с",
               "technician login locked after wrong PINs; try again in {retry_after_s} s"),
    "no_pin": ("PIN техника не настроен", "no technician PIN is configured"),
    "not_authorized": ("нужен вход техника", "technician login required"),
    "session_expired": ("сессия техника истекла, войдите снова",
                        "technician session expired; log in again"),
    "busy": ("идёт оплата клиента, повторите позже", "a customer is paying; try again later"),
}


def _refusal(code: str, message: str, data: dict[str, Any]) -> str:
    words = _REFUSALS.get(code)
    if words is not None:
        try:
            return " / ".join(w.format(**data) for w in words)
        except (KeyError, IndexError, ValueError):
            pass
    return f"отказ / refused: {message} ({code})"


# -- commands ------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from agent.daemon import run, setup_logging

    setup_logging(args.verbose)
    return run(_config(args))


def cmd_check_config(args: argparse.Namespace) -> int:
    from kiosk.preflight import check_devices

    config = _config(args)
    check_devices(config)  # what `run` would trip over later: profiles, protocols
    print(
        f"{config.source or '<defaults>'}: OK (terminal {config.terminal.id}, "
        f"{len(config.catalog.providers)} providers)"
    )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        status = client.request("status")
    if args.json:
        _print_json(status)
        return 0
    print(f"terminal      {status['terminal_id']}")
    print(f"screen        {status['screen']}")
    oos = status["out_of_service"]
    print(f"in service    {'no: ' + '; '.join(oos.values()) if oos else 'yes'}")
    acc = status["acceptor"]
    print(
        f"acceptor      {acc['status']} {acc['detail']} ({acc['info']['protocol']} "
        f"{acc['info']['model']})"
    )
    print(f"printer       {status['printer']['status']}")
    bills = status["bill_count"]
    print(f"cassette      {'-' if bills is None else bills} bills, {_money(status['total_minor'])}")
    unsent = status["queue"]["payments_unsent"]
    print(f"unsent        {'-' if unsent is None else unsent} payments")
    print(f"mqtt          {_sync_line(status.get('sync') or {})}")
    for device, err in (status.get("last_errors") or {}).items():
        if err:
            print(f"last error    {device}: {err['code']} {err['detail']} at {_when(err['at_ms'])}")
    print(f"support phone {status['support_phone']}")
    return 0


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def _sync_line(sync: dict[str, Any]) -> str:
    if not sync.get("enabled"):
        return "off ([mqtt] enabled = false)"
    state = "connected" if sync.get("connected") else "disconnected"
    line = (f"{state} since {_when(sync.get('since_ms'))}, "
            f"last delivery {_when(sync.get('last_delivery_ms'))}")
    if not sync.get("connected") and sync.get("last_error"):
        line += f" ({sync['last_error']})"
    return line


def cmd_payments(args: argparse.Namespace) -> int:
    with _client(args) as client:
        rows = client.request("payments", limit=args.limit)
    if args.json:
        _print_json(rows)
        return 0
    print(
        f"{'payment id':<22} {'kind':<9} {'status':<10} {'provider':<14} {'account':<14} "
        f"{'inserted':>10} {'fee':>8} {'credited':>10}"
    )
    for r in rows:
        print(
            f"{r['id']:<22} {r['kind']:<9} {r['status']:<10} {r['provider_id'] or '-':<14} "
            f"{r['account'] or '-':<14} {_money(r['inserted_minor']):>10} "
            f"{_money(r['commission_minor']):>8} {_money(r['credited_minor']):>10}"
        )
    return 0


def cmd_payment_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_json(
            client.request("payment_status", payment_id=args.payment_id, check_code=args.code)
        )
    return 0


def cmd_pay(args: argparse.Namespace) -> int:
    from kiosk.scripted import inbox_feeder, run_payment

    config = _config(args)
    feed_path = (
        Path(args.feed)
        if args.feed
        else (config.acceptor.inbox or config.paths.data_dir / "virtual-acceptor.inbox")
    )
    bills = [int(b) for b in args.bills.split(",") if b.strip()]
    with _client(args) as client:
        client.request("subscribe")
        result = run_payment(
            client,
            args.provider,
            args.account,
            bills,
            inbox_feeder(feed_path),
            timeout=args.timeout,
        )
    _print_json(result)
    return 0


def cmd_pin_hash(args: argparse.Namespace) -> int:
    from kiosk.pin import hash_pin

    pin = sys.stdin.readline().strip() if args.stdin else getpass.getpass("New PIN: ")
    try:
        print(hash_pin(pin))
    except ValueError as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_diag(args: argparse.Namespace) -> int:
    pin = os.environ.get("KIOSK_PIN") or getpass.getpass("PIN техника / technician PIN: ")
    with _client(args) as client:
        token = client.request("tech.login", pin=pin, channel="shell")["token"]
        try:
            op = args.diag_op
            if op == "counters":
                result = client.request("tech.counters", token=token)
            elif op == "events":
                result = client.request("tech.events", token=token, limit=args.limit)
            elif op == "encash":
                result = client.request("tech.encash", token=token)
            elif op == "reprint":
                result = client.request("tech.reprint", token=token, payment_id=args.payment_id)
            elif op == "test-print":
                result = client.request("tech.test_print", token=token)
            else:
                result = client.request("tech.service", token=token, on=args.state == "on")
        finally:
            client.request("tech.logout", token=token)
    _print_json(result)
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    """`kiosk ledger init --new`: the technician's explicit decision to start a new ledger
    when the terminal's own is missing or replaced (docs/ledger.md). Through the running
    core when there is one (it is out of service, waiting for this), else directly."""
    if not args.new:
        print("kiosk: укажите --new: будет начат новый пустой журнал (старый файл сохранится) / "
              "say --new: a new, empty ledger is started (the old file is kept)")
        return EXIT_USAGE
    config = _config(args)
    tid = config.terminal.id
    if args.yes:
        confirm = tid
    else:
        print(
            f"Новый журнал терминала {tid}: платежи текущего, не подтверждённые сервером, "
            "останутся только в отложенном файле.\n"
            f"A new ledger for terminal {tid}: payments in the current one that the desk has "
            "not acknowledged stay only in the moved-aside file.",
            file=sys.stderr,
        )
        confirm = input(f"Введите номер терминала / type the terminal id ({tid}): ").strip()
    if confirm != tid:
        print("kiosk: не подтверждено, ничего не изменено / not confirmed; nothing changed",
              file=sys.stderr)
        return 1
    pin = os.environ.get("KIOSK_PIN") or getpass.getpass("PIN техника / technician PIN: ")
    client = ApiClient(getattr(args, "socket", None) or config.paths.socket)
    try:
        client.connect(subscribe=False)
    except (FileNotFoundError, ConnectionRefusedError):
        return _ledger_init_offline(config, pin, confirm, args.reason)
    with client:
        token = client.request("tech.login", pin=pin, channel="shell")["token"]
        try:
            result = client.request(
                "tech.ledger_init", token=token, confirm=confirm, reason=args.reason
            )
        finally:
            client.request("tech.logout", token=token)
    _print_json(result)
    return 0


def _ledger_init_offline(config: Config, pin: str, confirm: str, reason: str) -> int:
    """No core running: do it here, under the data folder's lock (a core starting now
    waits for nobody: it finds the lock taken and refuses, so nothing races)."""
    from agent.daemon import AlreadyRunning, lock_data_dir
    from kiosk.ledger import Ledger, LedgerError, LedgerIdentityError
    from kiosk.technician import LOCKOUT_FILE, Channel, TechnicianAccess, TechnicianAuthError

    try:
        fd = lock_data_dir(config)
    except (AlreadyRunning, LedgerError) as exc:
        print(f"kiosk: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # The core's own PIN check, on its state file: a wrong PIN here counts towards
        # the same lockout, and a lockout set by the core (or here) refuses this too.
        access = TechnicianAccess(
            config.technician, time.monotonic,
            state_path=config.paths.data_dir / LOCKOUT_FILE,
        )
        try:
            access.login(pin, Channel.SHELL)
        except TechnicianAuthError as exc:
            print(f"kiosk: {_refusal(exc.code, exc.message, exc.data)}", file=sys.stderr)
            return 1
        ledger = Ledger(config.paths.ledger, config.terminal.id)
        try:
            ledger.open()
        except LedgerIdentityError:
            pass  # the case this command is for
        else:
            ledger.close()
            print("kiosk: журнал принадлежит этому терминалу, делать нечего / the ledger is this "
                  "terminal's own: nothing to do", file=sys.stderr)
            return 1
        result = ledger.initialise_new("technician (cli)", reason)
        ledger.close()
    finally:
        os.close(fd)
    _print_json({**result, "confirmed": confirm})
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    if args.device == "ccnet":
        from drivers.sim.ccnet import main as sim_main
    elif args.device == "id003":
        from drivers.sim.id003 import main as sim_main
    else:
        from drivers.sim.printer import main as sim_main
    return sim_main(args.rest)


def cmd_devices(args: argparse.Namespace) -> int:
    from drivers.probe import main as probe_main

    return probe_main(args.rest)


def cmd_keys(args: argparse.Namespace) -> int:
    from sync.cli import keys_main

    return keys_main(args.dir, args.terminal, _config(args))


def cmd_desk(args: argparse.Namespace) -> int:
    from sync.cli import desk_main

    return desk_main(args.rest)


def cmd_broker_kit(args: argparse.Namespace) -> int:
    from sync.broker_kit import main as kit_main

    return kit_main(args.rest)


def cmd_ui(args: argparse.Namespace) -> int:
    """The touchscreen (ui/, Kivy): socket, terminal id and support phone come from the
    core's config; every other option goes to the UI as it is (`kiosk ui --help`)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", "-c")
    known, rest = pre.parse_known_args(args.rest)
    if not {"-h", "--help"} & set(rest):
        config = load_config(Path(known.config) if known.config else None)
        rest = [
            "--socket",
            str(config.paths.socket),
            "--phone",
            config.terminal.support_phone,
            "--terminal-id",
            config.terminal.id,
            *rest,  # the UI's own flags come last and win
        ]
    from ui.__main__ import main as ui_main  # Kivy only for this command

    return ui_main(rest)


def cmd_demo(args: argparse.Namespace) -> int:
    from agent.demo import main as demo_main

    return demo_main(args)


# -- parser --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kiosk", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(
        name: str, func: Any, help_text: str, config: bool = True, socket_opt: bool = False
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if config:
            sp.add_argument("--config", "-c", help="configuration TOML file (default: demo)")
        if socket_opt:
            sp.add_argument("--socket", help="local API socket (default: from the config)")
        sp.set_defaults(func=func)
        return sp

    sp = add("run", cmd_run, "run the core daemon")
    sp.add_argument("--verbose", "-v", action="store_true")
    add("check-config", cmd_check_config, "validate a configuration file and exit")
    sp = add("status", cmd_status, "terminal status from the running core", socket_opt=True)
    sp.add_argument("--json", action="store_true")
    sp = add("payments", cmd_payments, "recent payments from the ledger", socket_opt=True)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--limit", type=int, default=20)
    sp = add(
        "payment-status",
        cmd_payment_status,
        "what a customer sees for a payment id and its check code (from the receipt)",
        socket_opt=True,
    )
    sp.add_argument("payment_id")
    sp.add_argument("code", help="the check code printed on the receipt")
    sp = add(
        "pay",
        cmd_pay,
        "a scripted customer: select, enter account, insert bills, pay",
        socket_opt=True,
    )
    sp.add_argument("--provider", required=True)
    sp.add_argument("--account", required=True, help="digits only, e.g. 9161234567")
    sp.add_argument("--bills", required=True, help="bills in roubles, e.g. 500,100")
    sp.add_argument(
        "--feed",
        help="file or FIFO taking 'insert N' lines (default: the virtual acceptor's inbox)",
    )
    sp.add_argument("--timeout", type=float, default=30.0)
    sp = add("pin-hash", cmd_pin_hash, "hash a technician PIN for the config", config=False)
    sp.add_argument("--stdin", action="store_true", help="read the PIN from standard input")
    sp = add(
        "diag", cmd_diag, "technician diagnostics (PIN from KIOSK_PIN or a prompt)", socket_opt=True
    )
    # --config/--socket may also follow the operation: `kiosk diag counters -c FILE`
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=argparse.SUPPRESS)
    common.add_argument("--socket", default=argparse.SUPPRESS)
    dsub = sp.add_subparsers(dest="diag_op", required=True)
    dsub.add_parser("counters", help="cassette counters and queue", parents=[common])
    ev = dsub.add_parser("events", help="recent events", parents=[common])
    ev.add_argument("--limit", type=int, default=20)
    dsub.add_parser(
        "encash", help="empty the cassette: print the report, reset counters", parents=[common]
    )
    rp = dsub.add_parser("reprint", help="reprint a receipt by payment id", parents=[common])
    rp.add_argument("payment_id")
    dsub.add_parser("test-print", help="print a test page", parents=[common])
    sv = dsub.add_parser(
        "service", help="take the terminal out of service or back", parents=[common]
    )
    sv.add_argument("state", choices=["on", "off"])
    sp = add(
        "ledger",
        cmd_ledger,
        "technician: start a new ledger when this terminal's own is missing or replaced",
        socket_opt=True,
    )
    sp.add_argument("action", choices=["init"])
    sp.add_argument("--new", action="store_true", help="start a new, empty ledger")
    sp.add_argument("--yes", action="store_true", help="do not ask to type the terminal id")
    sp.add_argument("--reason", default="", help="why (recorded and sent to the desk)")
    sp = add("sim", cmd_sim, "run a device simulator on a pseudo-terminal", config=False)
    sp.add_argument("device", choices=["ccnet", "id003", "printer"])
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="simulator options (see --help)")
    sp = add("devices", cmd_devices, "find and identify devices on serial ports", config=False)
    sp.add_argument("action", choices=["probe"])
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="ports and probe options")
    sp = add("keys", cmd_keys, "create the terminal's signing key, TLS key and CSR")
    sp.add_argument("--dir", help="where to write them (default: next to mqtt.signing_key)")
    sp.add_argument("--terminal", help="terminal id for the CSR (default: from the config)")
    sp = add("desk", cmd_desk, "desk side: keygen, watch, cmd, config, status", config=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="see 'kiosk desk --help'")
    sp = add("broker-kit", cmd_broker_kit, "the broker's CAs, certificates, config and ACL",
             config=False)
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="see 'kiosk broker-kit --help'")
    # Every option after `ui` is the UI's (prefix '+' keeps argparse from judging them).
    sp = sub.add_parser(
        "ui",
        help="the customer touchscreen (Kivy), a client of the local API",
        description="The customer touchscreen. -c FILE: the core's config; other options: "
        "see `kiosk ui --help`.",
        prefix_chars="+",
        add_help=False,
    )
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="-c FILE and the UI's options")
    sp.set_defaults(func=cmd_ui)
    sp = add("demo", cmd_demo, "a terminal with simulated devices takes a payment")
    sp.add_argument("--workdir", default="demo-run", help="where the demo keeps its files")
    sp.add_argument(
        "--acceptor",
        choices=["ccnet", "id003", "virtual"],
        default="ccnet",
        help="bill acceptor: CCNET (default) or ID-003 simulator on a pty, or virtual",
    )
    sp.add_argument(
        "--no-ui",
        action="store_true",
        help="do not open the touchscreen even when a display is available",
    )
    sp.add_argument(
        "--desk",
        action="store_true",
        help="deliver the payment to a desk (local mosquitto, SQLite) and keep its "
        "operator's page open until Ctrl-C",
    )
    sp.add_argument("--http", default="127.0.0.1:8080", metavar="HOST:PORT",
                    help="with --desk: where the page listens (default 127.0.0.1:8080)")
    sp.add_argument("--desk-for", type=float, default=None, metavar="S",
                    help="with --desk: stop after S seconds instead of waiting for Ctrl-C")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["desk"]:  # options before the operation: its own parser (sync/cli.py)
        from sync.cli import desk_main

        return desk_main(argv[1:])
    if argv[:1] == ["broker-kit"]:  # its own parser (sync/broker_kit.py)
        from sync.broker_kit import main as kit_main

        return kit_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"kiosk: bad configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ApiRequestError as exc:
        print(f"kiosk: {_refusal(exc.code, exc.message, exc.data)}", file=sys.stderr)
        return 1
    except (ConnectionError, TimeoutError) as exc:
        print(f"kiosk: lost the core: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except RuntimeError as exc:  # kiosk.scripted.PaymentNotMade and the like
        print(f"kiosk: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
