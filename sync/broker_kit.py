"""`kiosk broker-kit`: what an operator needs to run the fleet's mosquitto.

    kiosk broker-kit init --dir DIR --server-name HOST [--port 8883] [--desk-port 8884]
                          [--bind ADDR] [--days 825]
    kiosk broker-kit sign --dir DIR --csr tls.csr --out T0001.pem [--days 825]
    kiosk broker-kit terminal --dir DIR --id T0001 --out FOLDER   (key + certificate, labs)
    kiosk broker-kit desk --dir DIR --out FOLDER                  (desk key + certificate)

`init` creates two CAs (terminals, desk services), the broker's server certificate,
and writes DIR/kiosk.conf and DIR/acl from the files shipped in deploy/mosquitto/: the
ACL verbatim, the configuration with /etc/mosquitto/kiosk replaced by DIR (and the
listener lines by --port/--desk-port/--bind). Nothing else is changed, so what runs is
what is shipped and documented (docs/mqtt.md).

A terminal certificate's CN must be a terminal id (never the desk's identity, never a
wildcard); a desk certificate's CN is always DESK_IDENTITY. Private keys are 0600.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sync import topics
from sync.keys import KeyError_, issue, make_ca, make_csr, pem, write_private, write_tls_key

DESK_IDENTITY = "kiosk.desk"  # has a '.', which a terminal id never has
SHIPPED = Path(__file__).resolve().parents[1] / "deploy" / "mosquitto"
SHIPPED_DIR = "/etc/mosquitto/kiosk"
DEFAULT_PORT = 8883
DEFAULT_DESK_PORT = 8884
DEFAULT_DAYS = 825

TERMINAL_CA = "terminal-ca.pem"
TERMINAL_CA_KEY = "terminal-ca.key"
DESK_CA = "desk-ca.pem"
DESK_CA_KEY = "desk-ca.key"
SERVER_CERT = "server.pem"
SERVER_KEY = "server.key"
CONF = "kiosk.conf"
ACL = "acl"


class KitError(ValueError):
    """A refused kit operation; the message says why."""


@dataclass(frozen=True)
class Kit:
    dir: Path

    @property
    def conf(self) -> Path:
        return self.dir / CONF

    @property
    def acl(self) -> Path:
        return self.dir / ACL

    @property
    def terminal_ca(self) -> Path:
        return self.dir / TERMINAL_CA

    @property
    def desk_ca(self) -> Path:
        return self.dir / DESK_CA


def render_conf(directory: Path, port: int, desk_port: int, bind: str | None) -> str:
    """The shipped kiosk.conf with only its paths and listener lines substituted."""
    text = (SHIPPED / CONF).read_text(encoding="utf-8")
    where = f" {bind}" if bind else ""
    text = text.replace(f"listener {DEFAULT_PORT}\n", f"listener {port}{where}\n")
    text = text.replace(f"listener {DEFAULT_DESK_PORT}\n", f"listener {desk_port}{where}\n")
    return text.replace(SHIPPED_DIR, str(directory))


def _load_ca(kit: Kit, desk: bool):  # type: ignore[no-untyped-def]
    cert_path = kit.desk_ca if desk else kit.terminal_ca
    key_path = kit.dir / (DESK_CA_KEY if desk else TERMINAL_CA_KEY)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise KitError(f"{exc.filename}: not found (run 'kiosk broker-kit init' first)") from exc
    return key, cert


def init(
    directory: Path,
    server_name: str,
    port: int = DEFAULT_PORT,
    desk_port: int = DEFAULT_DESK_PORT,
    bind: str | None = None,
    days: int = DEFAULT_DAYS,
) -> Kit:
    kit = Kit(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in (TERMINAL_CA_KEY, DESK_CA_KEY, SERVER_KEY):
        if (directory / name).exists():
            raise KitError(f"{directory / name} exists; keys are never overwritten")
    for cn, cert_name, key_name in (
        ("kiosk terminal CA", TERMINAL_CA, TERMINAL_CA_KEY),
        ("kiosk desk CA", DESK_CA, DESK_CA_KEY),
    ):
        key, cert = make_ca(cn, days=days * 2)
        write_private(directory / key_name, pem(key))
        (directory / cert_name).write_bytes(pem(cert))
    ca_key, ca_cert = _load_ca(kit, desk=False)
    server_key = write_tls_key(directory / SERVER_KEY)
    server = issue(ca_key, ca_cert, make_csr(server_key, server_name), days=days,
                   server_name=server_name)
    (directory / SERVER_CERT).write_bytes(pem(server))
    kit.acl.write_bytes((SHIPPED / ACL).read_bytes())
    kit.conf.write_text(render_conf(directory, port, desk_port, bind), encoding="utf-8")
    return kit


def check_terminal_cn(cn: str) -> None:
    if cn == DESK_IDENTITY or not topics.valid_terminal_id(cn):
        raise KitError(
            f"CN {cn[:40]!r} is not a terminal id (1-32 letters, digits or '-'); "
            "refusing to sign it as a terminal certificate"
        )


def sign_terminal(kit: Kit, csr: x509.CertificateSigningRequest, days: int = DEFAULT_DAYS
                  ) -> x509.Certificate:
    """Sign a terminal's CSR with the terminal CA: CN must be a valid terminal id."""
    cns = csr.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise KitError("the CSR must carry exactly one CN (the terminal id)")
    check_terminal_cn(str(cns[0].value))
    key, cert = _load_ca(kit, desk=False)
    return issue(key, cert, csr, days=days)


def terminal_cert(kit: Kit, terminal_id: str, out: Path, days: int = DEFAULT_DAYS
                  ) -> tuple[Path, Path]:
    """A TLS key and certificate for a terminal, made here (labs, tests)."""
    check_terminal_cn(terminal_id)
    out.mkdir(parents=True, exist_ok=True)
    key = write_tls_key(out / f"{terminal_id}.key")
    cert = sign_terminal(kit, make_csr(key, terminal_id), days)
    (out / f"{terminal_id}.pem").write_bytes(pem(cert))
    return out / f"{terminal_id}.pem", out / f"{terminal_id}.key"


def desk_cert(kit: Kit, out: Path, name: str = "desk", days: int = DEFAULT_DAYS
              ) -> tuple[Path, Path]:
    """A TLS key and certificate for a desk service: CN = DESK_IDENTITY, desk CA."""
    out.mkdir(parents=True, exist_ok=True)
    key = write_tls_key(out / f"{name}.key")
    ca_key, ca_cert = _load_ca(kit, desk=True)
    cert = issue(ca_key, ca_cert, make_csr(key, DESK_IDENTITY), days=days)
    (out / f"{name}.pem").write_bytes(pem(cert))
    return out / f"{name}.pem", out / f"{name}.key"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kiosk broker-kit", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="op", required=True)
    i = sub.add_parser("init", help="CAs, server certificate, kiosk.conf and acl")
    i.add_argument("--dir", required=True)
    i.add_argument("--server-name", required=True, help="the broker's DNS name or IP address")
    i.add_argument("--port", type=int, default=DEFAULT_PORT)
    i.add_argument("--desk-port", type=int, default=DEFAULT_DESK_PORT)
    i.add_argument("--bind", help="listen on this address only (default: all)")
    i.add_argument("--days", type=int, default=DEFAULT_DAYS)
    s = sub.add_parser("sign", help="sign a terminal's CSR (kiosk keys makes it)")
    s.add_argument("--dir", required=True)
    s.add_argument("--csr", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--days", type=int, default=DEFAULT_DAYS)
    t = sub.add_parser("terminal", help="make a terminal TLS key and certificate here")
    t.add_argument("--dir", required=True)
    t.add_argument("--id", required=True)
    t.add_argument("--out", required=True)
    d = sub.add_parser("desk", help="make a desk service's TLS key and certificate")
    d.add_argument("--dir", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--name", default="desk", help="file name stem (the CN is always "
                   f"{DESK_IDENTITY})")
    args = ap.parse_args(argv)
    try:
        if args.op == "init":
            kit = init(Path(args.dir).resolve(), args.server_name, args.port, args.desk_port,
                       args.bind, args.days)
            print(f"terminal CA   {kit.terminal_ca}  (give to terminals as mqtt.tls_ca)")
            print(f"desk CA       {kit.desk_ca}")
            print(f"broker config {kit.conf}  ->  /etc/mosquitto/conf.d/")
            print(f"ACL           {kit.acl}")
            return 0
        kit = Kit(Path(args.dir).resolve())
        if args.op == "sign":
            csr = x509.load_pem_x509_csr(Path(args.csr).read_bytes())
            cert = sign_terminal(kit, csr, args.days)
            Path(args.out).write_bytes(pem(cert))
            print(f"certificate {args.out} (CN={cert.subject.rfc4514_string()[3:]})")
        elif args.op == "terminal":
            cert_path, key_path = terminal_cert(kit, args.id, Path(args.out))
            print(f"certificate {cert_path}, key {key_path}")
        else:
            cert_path, key_path = desk_cert(kit, Path(args.out), args.name)
            print(f"certificate {cert_path} (CN={DESK_IDENTITY}), key {key_path}")
        return 0
    except (KitError, KeyError_, OSError, ValueError) as exc:
        print(f"kiosk broker-kit: {exc}", file=sys.stderr)
        return 1

