"""Ed25519 signing and verification for the terminal, through the system's OpenSSL.

Why not `cryptography` here: importing it maps its Rust extension with a bundled
OpenSSL, about 7 MiB resident in the core daemon (docs/benchmarks.md, mqtt_drain),
while Python's own `ssl`/`hashlib` have already loaded the system libcrypto. Ed25519 is
four EVP calls of that library (OpenSSL ≥ 1.1.1), reached with ctypes (no new
dependency). Where libcrypto lacks Ed25519 the same classes use `cryptography`.

Keys are files in the formats `cryptography` writes (PKCS#8 / SubjectPublicKeyInfo
PEM), so keys made before keep working; both implementations are checked against
each other and RFC 8032 in tests/sync/test_ed25519.py.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import os
from collections.abc import Callable
from typing import Any

NID_ED25519 = 1087
SEED_LEN = 32
PUBLIC_LEN = 32
SIG_LEN = 64
# DER of an Ed25519 PKCS#8 private key (RFC 8410) and SubjectPublicKeyInfo, before the key
PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


class Ed25519Error(ValueError):
    """Not an Ed25519 key (or not one in a format we read)."""


class BadSignature(Exception):
    """The signature does not verify."""


def _libcrypto_path() -> str | None:
    """The libcrypto Python's own hashlib/ssl already mapped (no second copy, and no
    `ldconfig` run as ctypes.util.find_library does), else whatever the system names."""
    try:
        import _hashlib  # noqa: F401 - maps libcrypto if Python was built with OpenSSL

        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(" ", 5)[-1].strip()
                if "/libcrypto.so" in path:
                    return path
    except (ImportError, OSError):
        pass
    return ctypes.util.find_library("crypto")


def _load() -> Any:
    name = _libcrypto_path()
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        fns = (lib.EVP_PKEY_new_raw_private_key, lib.EVP_PKEY_new_raw_public_key,
               lib.EVP_PKEY_get_raw_public_key, lib.EVP_DigestSign, lib.EVP_DigestVerify)
    except (OSError, AttributeError):
        return None
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    for fn in fns[:2]:
        fn.restype, fn.argtypes = vp, [ctypes.c_int, vp, ctypes.c_char_p, sz]
    lib.EVP_PKEY_get_raw_public_key.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(sz)]
    lib.EVP_PKEY_free.argtypes = [vp]
    lib.EVP_MD_CTX_new.restype = vp
    lib.EVP_MD_CTX_free.argtypes = [vp]
    for fn in (lib.EVP_DigestSignInit, lib.EVP_DigestVerifyInit):
        fn.argtypes = [vp, vp, vp, vp, vp]
    lib.EVP_DigestSign.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(sz), ctypes.c_char_p, sz]
    lib.EVP_DigestVerify.argtypes = [vp, ctypes.c_char_p, sz, ctypes.c_char_p, sz]
    lib.ERR_clear_error.argtypes = []
    probe = lib.EVP_PKEY_new_raw_private_key(NID_ED25519, None, b"\x01" * SEED_LEN, SEED_LEN)
    if not probe:  # this libcrypto has no Ed25519
        lib.ERR_clear_error()
        return None
    lib.EVP_PKEY_free(probe)
    return lib


_LIB = None if os.environ.get("KIOSK_ED25519_BACKEND") == "cryptography" else _load()
BACKEND = "libcrypto" if _LIB is not None else "cryptography"


def _fail(what: str) -> Ed25519Error:
    if _LIB is not None:
        _LIB.ERR_clear_error()  # never leave errors in the queue Python's ssl reads
    return Ed25519Error(what)


class _PKey:
    """An EVP_PKEY owned by this object (or a `cryptography` key without libcrypto)."""

    def __init__(self, raw: bytes, private: bool) -> None:
        if _LIB is None:
            from cryptography.hazmat.primitives.asymmetric import ed25519

            loader: Callable[[bytes], Any] = (
                ed25519.Ed25519PrivateKey.from_private_bytes
                if private
                else ed25519.Ed25519PublicKey.from_public_bytes
            )
            self._key: Any = loader(raw)
            self._ptr = None
            return
        new = _LIB.EVP_PKEY_new_raw_private_key if private else _LIB.EVP_PKEY_new_raw_public_key
        self._ptr = new(NID_ED25519, None, raw, len(raw))
        if not self._ptr:
            raise _fail("not a valid Ed25519 key")

    def __del__(self) -> None:
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr and _LIB is not None:
            _LIB.EVP_PKEY_free(ptr)


def _pem_der(data: bytes, label: str) -> bytes:
    text = data.decode("ascii", "replace")
    begin, end = f"-----BEGIN {label}-----", f"-----END {label}-----"
    if begin not in text or end not in text:
        raise Ed25519Error(f"not a PEM {label.lower()}")
    inner = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        return base64.b64decode("".join(inner.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Ed25519Error(f"bad base64 in the PEM {label.lower()}") from exc


def _pem(der: bytes, label: str) -> bytes:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
            ).encode("ascii")


class PublicKey(_PKey):
    def __init__(self, raw: bytes) -> None:
        if len(raw) != PUBLIC_LEN:
            raise Ed25519Error(f"an Ed25519 public key has {PUBLIC_LEN} bytes, not {len(raw)}")
        super().__init__(raw, private=False)
        self.raw = bytes(raw)

    @classmethod
    def from_pem(cls, data: bytes) -> PublicKey:
        der = _pem_der(data, "PUBLIC KEY")
        if len(der) != len(SPKI_PREFIX) + PUBLIC_LEN or not der.startswith(SPKI_PREFIX):
            raise Ed25519Error("not an Ed25519 public key")
        return cls(der[len(SPKI_PREFIX):])

    def to_pem(self) -> bytes:
        return _pem(SPKI_PREFIX + self.raw, "PUBLIC KEY")

    def verify(self, signature: bytes, data: bytes) -> None:
        """Raises BadSignature unless `signature` is this key's over `data`."""
        if len(signature) != SIG_LEN:
            raise BadSignature("an Ed25519 signature has 64 bytes")
        if _LIB is None:
            from cryptography.exceptions import InvalidSignature

            try:
                self._key.verify(signature, data)
            except InvalidSignature as exc:
                raise BadSignature("signature does not verify") from exc
            return
        ctx = _LIB.EVP_MD_CTX_new()
        if not ctx:
            raise MemoryError("EVP_MD_CTX_new")
        try:
            if _LIB.EVP_DigestVerifyInit(ctx, None, None, None, self._ptr) != 1:
                raise _fail("EVP_DigestVerifyInit failed")
            ok = _LIB.EVP_DigestVerify(ctx, signature, SIG_LEN, data, len(data))
        finally:
            _LIB.EVP_MD_CTX_free(ctx)
        if ok != 1:
            _LIB.ERR_clear_error()
            raise BadSignature("signature does not verify")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


class PrivateKey(_PKey):
    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise Ed25519Error(f"an Ed25519 private key has {SEED_LEN} bytes, not {len(seed)}")
        super().__init__(seed, private=True)
        self._seed = bytes(seed)
        self._public: PublicKey | None = None

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(os.urandom(SEED_LEN))

    @classmethod
    def from_pem(cls, data: bytes) -> PrivateKey:
        der = _pem_der(data, "PRIVATE KEY")
        if len(der) == len(PKCS8_PREFIX) + SEED_LEN and der.startswith(PKCS8_PREFIX):
            return cls(der[len(PKCS8_PREFIX):])
        # another PKCS#8 shape (e.g. with the public key attached): let cryptography read it
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise Ed25519Error("not an unencrypted PEM private key") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise Ed25519Error("not an Ed25519 key")
        return cls(key.private_bytes_raw())

    def to_pem(self) -> bytes:
        return _pem(PKCS8_PREFIX + self._seed, "PRIVATE KEY")

    def public_key(self) -> PublicKey:
        if self._public is None:
            if _LIB is None:
                from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

                raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            else:
                buf = ctypes.create_string_buffer(PUBLIC_LEN)
                size = ctypes.c_size_t(PUBLIC_LEN)
                if _LIB.EVP_PKEY_get_raw_public_key(self._ptr, buf, ctypes.byref(size)) != 1:
                    raise _fail("EVP_PKEY_get_raw_public_key failed")
                raw = buf.raw[: size.value]
            self._public = PublicKey(raw)
        return self._public

    def sign(self, data: bytes) -> bytes:
        if _LIB is None:
            return bytes(self._key.sign(data))
        ctx = _LIB.EVP_MD_CTX_new()
        if not ctx:
            raise MemoryError("EVP_MD_CTX_new")
        try:
            if _LIB.EVP_DigestSignInit(ctx, None, None, None, self._ptr) != 1:
                raise _fail("EVP_DigestSignInit failed")
            sig = ctypes.create_string_buffer(SIG_LEN)
            size = ctypes.c_size_t(SIG_LEN)
            if _LIB.EVP_DigestSign(ctx, sig, ctypes.byref(size), data, len(data)) != 1:
                raise _fail("EVP_DigestSign failed")
        finally:
            _LIB.EVP_MD_CTX_free(ctx)
        return sig.raw[: size.value]


def is_bad_signature(exc: BaseException) -> bool:
    """True for this module's BadSignature and `cryptography`'s InvalidSignature (the
    desk side may verify with `cryptography` keys), without importing `cryptography`."""
    return isinstance(exc, BadSignature) or type(exc).__name__ == "InvalidSignature"
