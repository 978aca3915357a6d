"""Signed envelopes: Ed25519 over the exact bytes of a JSON body.

Every desk → terminal message (cmd, config, ack, payment_status) and every terminal →
desk record batch (payments, events, cmd/result) travels as

    {"v": 1, "p": PURPOSE, "kid": KEY_ID, "body": "<JSON text>", "sig": "<base64>"}

`body` is a JSON *string* holding the JSON text that was signed, so the verifier checks
exactly the bytes the signer produced (no canonicalisation). The signature covers

    b"kiosk/v1\\x00" + PURPOSE + b"\\x00" + body (UTF-8)

so a message signed for one purpose (a config) can never be replayed as another (a
command). Pure functions, no I/O: tests/sync/test_envelope.py tables and fuzzes them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kiosk.coded_error import CodedError
from sync.ed25519 import is_bad_signature

VERSION = 1
DOMAIN = b"kiosk/v1\x00"
MAX_ENVELOPE_BYTES = 256 * 1024
PURPOSES = frozenset(
    {"cmd", "cmd_result", "config", "ack", "payment_status", "payments", "events",
     "desk_beat"}
)
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SIG_LEN = 64


class EnvelopeError(CodedError, ValueError):
    """A message that must be rejected; `code` is stable (docs/mqtt.md)."""


@dataclass(frozen=True)
class Opened:
    kid: str
    purpose: str
    body_bytes: bytes
    body: dict[str, Any]


def signed_bytes(purpose: str, body: bytes) -> bytes:
    return DOMAIN + purpose.encode("ascii") + b"\x00" + body


def dumps_body(body: Mapping[str, Any]) -> bytes:
    """The JSON text a signer signs: compact, UTF-8, keys sorted (for readable diffs only;
    the verifier never re-serialises)."""
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def seal(key: Any, kid: str, purpose: str, body: bytes | Mapping[str, Any]) -> bytes:
    """Sign `body` (bytes of a JSON object, or a mapping to serialise) for `purpose`.
    `key`: an Ed25519 private key (sync/ed25519.py, or a `cryptography` one)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}")
    if not KEY_ID_RE.match(kid):
        raise ValueError(f"bad key id {kid!r}")
    raw = body if isinstance(body, bytes) else dumps_body(body)
    sig = key.sign(signed_bytes(purpose, raw))
    envelope = {
        "v": VERSION,
        "p": purpose,
        "kid": kid,
        "body": raw.decode("utf-8"),
        "sig": base64.b64encode(sig).decode("ascii"),
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()


def open_envelope(
    raw: bytes, purpose: str, keys: Mapping[str, Any]
) -> Opened:
    """Verify and decode. Raises EnvelopeError with code: malformed, bad_version,
    wrong_purpose, unknown_key, bad_signature, too_large."""
    if not isinstance(raw, bytes | bytearray):
        raise EnvelopeError("malformed", "payload is not bytes")
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError("too_large", f"payload of {len(raw)} bytes")
    try:
        env = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise EnvelopeError("malformed", "payload is not a JSON envelope") from exc
    if not isinstance(env, dict):
        raise EnvelopeError("malformed", "envelope is not an object")
    if "sig" not in env or "kid" not in env:
        raise EnvelopeError("unsigned", "envelope has no signature")
    v, p, kid, body, sig = (env.get(k) for k in ("v", "p", "kid", "body", "sig"))
    if type(v) is not int or v != VERSION:
        raise EnvelopeError("bad_version", f"envelope version {v!r}")
    if not isinstance(p, str) or not isinstance(kid, str) or not isinstance(body, str):
        raise EnvelopeError("malformed", "envelope fields p, kid, body must be strings")
    if not isinstance(sig, str):
        raise EnvelopeError("malformed", "envelope field sig must be a string")
    if p != purpose:
        raise EnvelopeError("wrong_purpose", f"expected {purpose!r}, got {p[:32]!r}")
    public = keys.get(kid)
    if public is None:
        raise EnvelopeError("unknown_key", f"unknown key id {kid[:64]!r}")
    try:
        sig_bytes = base64.b64decode(sig.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise EnvelopeError("bad_signature", "signature is not base64") from exc
    if len(sig_bytes) != SIG_LEN:
        raise EnvelopeError("bad_signature", "signature has the wrong length")
    try:
        body_bytes = body.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from \ud800 escapes
        raise EnvelopeError("malformed", "body is not valid UTF-8 text") from exc
    try:
        public.verify(sig_bytes, signed_bytes(purpose, body_bytes))
    except Exception as exc:
        if not is_bad_signature(exc):
            raise
        raise EnvelopeError("bad_signature", "signature does not verify") from exc
    try:
        decoded = json.loads(body_bytes)
    except (ValueError, RecursionError) as exc:
        raise EnvelopeError("malformed", "signed body is not JSON") from exc
    if not isinstance(decoded, dict):
        raise EnvelopeError("malformed", "signed body is not an object")
    return Opened(kid, purpose, body_bytes, decoded)


def peek_body(raw: bytes) -> dict[str, Any]:
    """The body of an envelope WITHOUT verification, for logging a rejected message's
    claimed ids only. Never act on it."""
    try:
        env = json.loads(bytes(raw).decode("utf-8"))
        if not isinstance(env, dict):
            return {}
        body = json.loads(env["body"]) if isinstance(env.get("body"), str) else env
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}
