"""`kiosk keys` (terminal keys and CSR) and `kiosk desk` (a minimal desk-side tool).

    kiosk keys [-c CONFIG] [--dir DIR] [--terminal ID]
    kiosk desk keygen --dir DIR [--name desk]
    kiosk desk [connection options] watch [--for S]
    kiosk desk [connection options] cmd TERMINAL TYPE [--arg k=v …] [--ttl S] [--wait S]
    kiosk desk [connection options] config TERMINAL --version N [--support-phone P] [--file F]
    kiosk desk [connection options] status TERMINAL PAYMENT_ID processed|failed [--detail D]

Connection options: --host, --port, --key (desk Ed25519 key), --terminal-keys (folder of
<terminal id>.pub), --db (the desk's SQLite file), --tls-ca/--tls-cert/--tls-key.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from sync import topics
from sync.keys import (
    KeyError_,
    create_terminal_keys,
    key_id,
    load_signing_key,
    public_b64,
    write_signing_key,
)

DESK_KEY = "desk.ed25519.key"


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
    print(f"CSR           {keys.csr} (CN={terminal})  ->  send to the CA; never the keys")
    return 0


def _desk(args: argparse.Namespace, consume: bool):  # type: ignore[no-untyped-def]
    from sync.desk import Desk, describe, load_terminal_keys

    key_path = Path(args.key)
    key = load_signing_key(key_path)
    kid_file = key_path.with_suffix(".kid")
    kid = kid_file.read_text().strip() if kid_file.exists() else key_id("desk", key.public_key())
    terminal_keys = load_terminal_keys(Path(args.terminal_keys)) if args.terminal_keys else {}
    tls = None
    if args.tls_ca:
        tls = (Path(args.tls_ca), Path(args.tls_cert), Path(args.tls_key))

    def report(terminal: str, leaf: str, value: Any) -> None:
        print(describe(terminal, leaf, value), flush=True)

    return Desk(
        args.host,
        args.port,
        key,
        kid,
        terminal_keys,
        Path(args.db),
        client_id=args.client_id or (f"desk-{os.getpid()}" if not consume else "desk"),
        tls=tls,
        on_report=report if consume else None,
        consume=consume,
    )


def desk_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kiosk desk", description="a minimal desk-side tool")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--key", default=f"desk/{DESK_KEY}", help="the desk's Ed25519 key")
    ap.add_argument("--terminal-keys", help="folder of <terminal id>.pub files")
    ap.add_argument("--db", default="desk/desk.sqlite", help="the desk's own SQLite file")
    ap.add_argument("--client-id", default="")
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
    st.add_argument("--reprocess-count", type=int, default=0)
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

    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    try:
        desk = _desk(args, consume=args.op == "watch")
    except (KeyError_, OSError) as exc:
        print(f"kiosk desk: {exc}", file=sys.stderr)
        return 1
    with desk:
        if not desk.conn.wait_connected(10):
            print(f"kiosk desk: no broker at {args.host}:{args.port}", file=sys.stderr)
            return 3
        if args.op == "watch":
            deadline = time.monotonic() + args.seconds if args.seconds else None
            try:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            return 0
        if args.op == "cmd":
            cmd_args: dict[str, Any] = {}
            for item in args.arg:
                k, _, v = item.partition("=")
                cmd_args[k] = v
            body = desk.command_body(args.terminal, args.type, cmd_args, args.ttl)
            desk.send_command(body)
            result = desk.wait_result(body["cmd_id"], args.wait)
            if result is None:
                print(f"kiosk desk: no result for {body['cmd_id']} in {args.wait} s",
                      file=sys.stderr)
                return 1
            print(json.dumps(result, ensure_ascii=False, sort_keys=True))
            return 0 if result.get("ok") else 1
        if args.op == "config":
            doc: dict[str, Any] = {}
            if args.file:
                doc.update(json.loads(Path(args.file).read_text(encoding="utf-8")))
            doc.update({"version": args.version, "terminal_id": doc.get("terminal_id", "*")})
            if args.support_phone:
                doc["support_phone"] = args.support_phone
            desk.publish_config(args.terminal, doc)
        else:
            desk.payment_status(
                args.terminal,
                [{"payment_id": args.payment_id, "status": args.status,
                  "detail": args.detail, "reprocess_count": args.reprocess_count}],
            )
        time.sleep(0.5)  # let the QoS 1 publish be acknowledged before disconnecting
        print("sent")
    return 0
