"""Keys: the terminal's Ed25519 signing key, its TLS key and CSR, and a small CA for
the desk side (tests, the demo, a lab broker).

- Ed25519 (`terminal.ed25519.key`): signs payments, events and command results; the desk
  pins its public key. Key id = "<terminal id>.<first 8 hex of sha256(raw public key)>".
- TLS client key (EC P-256, widest broker/OpenSSL support) and a CSR whose CN is the
  terminal id: the broker maps the certificate's CN to the MQTT username
  (`use_identity_as_username`), and the ACL confines that username to its own topics.
- Private keys are written 0600, never printed, never sent; only the CSR leaves.

The Ed25519 part uses sync/ed25519.py (the system's libcrypto): the core daemon loads
this module and must not pay for `cryptography` (about 7 MiB resident), which the TLS
and CA functions below import when they are called.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kiosk.durable_file import make_dirs, write_file, write_new
from sync.ed25519 import Ed25519Error, PrivateKey, PublicKey

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

SIGNING_KEY = "terminal.ed25519.key"
SIGNING_PUB = "terminal.ed25519.pub"
TLS_KEY = "tls.key"
TLS_CSR = "tls.csr"
PRIVATE_MODE = 0o600  # private keys: the owner only
PUBLIC_MODE = 0o644  # public keys and the CSR


class KeyError_(ValueError):
    """A key file is missing or not what it should be; the message names it."""


# -- Ed25519 -------------------------------------------------------------------------
def public_raw(pub: Any) -> bytes:
    """Raw 32 bytes of a public key: ours (sync/ed25519.py) or a `cryptography` one."""
    if isinstance(pub, PublicKey):
        return pub.raw
    from cryptography.hazmat.primitives import serialization

    return bytes(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_b64(pub: Any) -> str:
    return base64.b64encode(public_raw(pub)).decode("ascii")


def public_from_b64(text: str) -> PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return PublicKey(raw)
    except ValueError as exc:
        raise KeyError_(f"not a base64 Ed25519 public key: {text[:16]!r}…") from exc


def fingerprint(pub: Any) -> str:
    return hashlib.sha256(public_raw(pub)).hexdigest()[:8]


def key_id(owner: str, pub: Any) -> str:
    return f"{owner}.{fingerprint(pub)}"


def write_private(path: Path, data: bytes) -> None:
    """Create a 0600 file (never overwrite), fsync it and its folder."""
    make_dirs(path.parent)
    write_new(path, data, PRIVATE_MODE)


def _write_public(path: Path, data: bytes) -> None:
    write_file(path, data, PUBLIC_MODE)


def write_signing_key(path: Path) -> PrivateKey:
    """Create a new Ed25519 key at `path` (refuses to overwrite) and its .pub beside it
    (PKCS#8 and SubjectPublicKeyInfo PEM)."""
    key = PrivateKey.generate()
    write_private(path, key.to_pem())
    _write_public(path.with_suffix(".pub"), key.public_key().to_pem())
    return key


def load_signing_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyError_(f"{path}: key file not found (create it with 'kiosk keys')") from exc
    try:
        return PrivateKey.from_pem(data)
    except Ed25519Error as exc:
        raise KeyError_(f"{path}: {exc}") from exc


def load_public_key(path: Path) -> PublicKey:
    data = path.read_bytes()
    if b"-----BEGIN" not in data:
        return public_from_b64(data.decode("ascii", "replace"))
    try:
        return PublicKey.from_pem(data)
    except Ed25519Error as exc:
        raise KeyError_(f"{path}: {exc}") from exc


def load_or_create_signing_key(path: Path) -> tuple[PrivateKey, bool]:
    if path.exists():
        return load_signing_key(path), False
    return write_signing_key(path), True


# -- TLS key and CSR -----------------------------------------------------------------
def write_tls_key(path: Path) -> ec.EllipticCurvePrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return key


def make_csr(key: ec.EllipticCurvePrivateKey, common_name: str) -> x509.CertificateSigningRequest:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True)
class TerminalKeys:
    signing_key: Path
    signing_pub: Path
    tls_key: Path
    csr: Path
    key_id: str
    public_b64: str


def create_terminal_keys(directory: Path, terminal_id: str) -> TerminalKeys:
    """`kiosk keys`: Ed25519 signing key, TLS key and CSR (CN = terminal id)."""
    from cryptography.hazmat.primitives import serialization
    make_dirs(directory)
    signing = directory / SIGNING_KEY
    tls = directory / TLS_KEY
    for path in (signing, tls):
        if path.exists():
            raise KeyError_(f"{path} exists; move it away first (keys are never overwritten)")
    key = write_signing_key(signing)
    tls_key = write_tls_key(tls)
    csr = make_csr(tls_key, terminal_id)
    _write_public(directory / TLS_CSR, csr.public_bytes(serialization.Encoding.PEM))
    pub = key.public_key()
    return TerminalKeys(
        signing,
        signing.with_suffix(".pub"),
        tls,
        directory / TLS_CSR,
        key_id(terminal_id, pub),
        public_b64(pub),
    )


# -- a small CA (desk side, tests, lab brokers) --------------------------------------
def _name(cn: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(
    common_name: str = "kiosk test CA", days: int = 30
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    days: int = 30,
    server_ip: str | None = None,
    server_name: str | None = None,
) -> x509.Certificate:
    """Sign a CSR: a client certificate, or a server one for `server_ip` / `server_name`
    (an IP address or a DNS name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID
    if server_ip is not None:
        server_name = server_ip
    if not csr.is_signature_valid:
        raise KeyError_("the CSR's signature does not verify")
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if server_name is not None:
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(server_name))
        except ValueError:
            san = x509.DNSName(server_name)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([san]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def pem(obj: x509.Certificate | x509.CertificateSigningRequest | PrivateKeyTypes) -> bytes:
    """PEM of a certificate, CSR or (unencrypted) private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    if isinstance(obj, x509.Certificate | x509.CertificateSigningRequest):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
