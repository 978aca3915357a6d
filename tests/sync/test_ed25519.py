"""sync/ed25519.py (system libcrypto through ctypes) against RFC 8032 and against
`cryptography`, both ways, including the key files each writes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sync import ed25519
from sync.envelope import EnvelopeError, open_envelope, seal
from sync.keys import load_public_key, load_signing_key, public_b64, write_signing_key

# RFC 8032, 7.1, TEST 1 and TEST 2
VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
     "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
]


def test_the_system_library_is_used_here():
    assert ed25519.BACKEND == "libcrypto"  # the memory figure relies on it


@pytest.mark.parametrize(("seed", "public", "msg", "sig"), VECTORS)
def test_rfc8032_vectors(seed, public, msg, sig):
    key = ed25519.PrivateKey(bytes.fromhex(seed))
    assert key.public_key().raw.hex() == public
    assert key.sign(bytes.fromhex(msg)).hex() == sig
    key.public_key().verify(bytes.fromhex(sig), bytes.fromhex(msg))
    bad = bytearray(bytes.fromhex(sig))
    bad[0] ^= 1
    with pytest.raises(ed25519.BadSignature):
        key.public_key().verify(bytes(bad), bytes.fromhex(msg))


def test_interoperates_with_cryptography_both_ways():
    for n in range(20):
        msg = os.urandom(n * 37)
        ours = ed25519.PrivateKey.generate()
        theirs = Ed25519PublicKey.from_public_bytes(ours.public_key().raw)
        theirs.verify(ours.sign(msg), msg)
        other = Ed25519PrivateKey.generate()
        pub = ed25519.PublicKey(other.public_key().public_bytes_raw())
        pub.verify(other.sign(msg), msg)
        with pytest.raises(ed25519.BadSignature):
            pub.verify(other.sign(msg + b"x"), msg)
        with pytest.raises(InvalidSignature):
            theirs.verify(ours.sign(msg + b"x"), msg)


def test_key_files_are_readable_by_either(tmp_path):
    ours = write_signing_key(tmp_path / "a.key")
    loaded = serialization.load_pem_private_key((tmp_path / "a.key").read_bytes(), None)
    assert loaded.public_key().public_bytes_raw() == ours.public_key().raw
    pub = serialization.load_pem_public_key((tmp_path / "a.pub").read_bytes())
    assert pub.public_bytes_raw() == ours.public_key().raw
    theirs = Ed25519PrivateKey.generate()
    (tmp_path / "b.key").write_bytes(theirs.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "b.pub").write_bytes(theirs.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert load_signing_key(tmp_path / "b.key").public_key().raw == \
        theirs.public_key().public_bytes_raw()
    assert load_public_key(tmp_path / "b.pub").raw == theirs.public_key().public_bytes_raw()
    assert public_b64(theirs.public_key()) == public_b64(load_public_key(tmp_path / "b.pub"))


def test_envelopes_cross_between_implementations():
    ours, theirs = ed25519.PrivateKey.generate(), Ed25519PrivateKey.generate()
    env = seal(theirs, "desk.x", "cmd", {"a": 1})
    assert open_envelope(env, "cmd", {"desk.x": ed25519.PublicKey(
        theirs.public_key().public_bytes_raw())}).body == {"a": 1}
    env = seal(ours, "t.x", "payments", {"b": 2})
    assert open_envelope(env, "payments", {"t.x": Ed25519PublicKey.from_public_bytes(
        ours.public_key().raw)}).body == {"b": 2}
    with pytest.raises(EnvelopeError) as err:
        open_envelope(env, "payments", {"t.x": ed25519.PrivateKey.generate().public_key()})
    assert err.value.code == "bad_signature"


def test_bad_keys_are_clear_errors(tmp_path):
    with pytest.raises(ed25519.Ed25519Error):
        ed25519.PublicKey(b"short")
    with pytest.raises(ed25519.Ed25519Error):
        ed25519.PrivateKey.from_pem(b"not a pem")
    (tmp_path / "ec.key").write_bytes(b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG"
                                      b"CCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n")
    from sync.keys import KeyError_

    with pytest.raises(KeyError_):
        load_signing_key(tmp_path / "ec.key")


def test_the_daemon_side_never_imports_cryptography():
    code = ("import sys, agent.daemon, sync.agent, sync.keys, sync.envelope; "
            "from sync.keys import load_or_create_signing_key; import tempfile, pathlib; "
            "d = pathlib.Path(tempfile.mkdtemp()); k, _ = load_or_create_signing_key(d / 'k'); "
            "k.sign(b'x'); print(sorted(m for m in sys.modules if m.startswith('cryptography')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_cryptography_fallback_gives_the_same_signatures():
    seed, public, msg, sig = VECTORS[1]
    code = ("import sys; from sync import ed25519 as e; "
            "k = e.PrivateKey(bytes.fromhex(sys.argv[1]));"
            "s = k.sign(bytes.fromhex(sys.argv[2])); k.public_key().verify(s, bytes.fromhex("
            "sys.argv[2])); print(e.BACKEND, k.public_key().raw.hex(), s.hex())")
    out = subprocess.run([sys.executable, "-c", code, seed, msg], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": os.getcwd(),
                                                     "KIOSK_ED25519_BACKEND": "cryptography"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cryptography", public, sig]
