"""Technician PIN hashing: scrypt with a per-hash salt, never the PIN itself.

Format: scrypt$N$r$p$<salt b64>$<hash b64>. Verification is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

N, R, P = 16384, 8, 1
KEY_LEN = 32
SALT_LEN = 16


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    if not pin.isdigit() or not 4 <= len(pin) <= 12:
        raise ValueError("a PIN is 4 to 12 digits")
    return hash_secret(pin, salt)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """Any secret (a PIN, a desk operator's password) in the same scrypt format."""
    salt = salt if salt is not None else os.urandom(SALT_LEN)
    key = hashlib.scrypt(secret.encode(), salt=salt, n=N, r=R, p=P, dklen=KEY_LEN)
    b64 = base64.b64encode
    return f"scrypt${N}${R}${P}${b64(salt).decode()}${b64(key).decode()}"


def verify_pin(pin: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_b64, key_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(key_b64, validate=True)
        key = hashlib.scrypt(
            pin.encode(), salt=salt, n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(key, expected)


verify_secret = verify_pin  # the format does not care what the secret was
