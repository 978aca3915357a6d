"""Signed envelopes: table tests of every rejection, and fuzzing (hypothesis)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.envelope import EnvelopeError, dumps_body, open_envelope, peek_body, seal

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
KEYS = {"desk1": KEY.public_key()}
BODY = {"cmd_id": "c1", "terminal_id": "T1", "type": "enable", "seq": 1}


def _env(**changes) -> bytes:  # type: ignore[no-untyped-def]
    env = json.loads(seal(KEY, "desk1", "cmd", BODY))
    env.update(changes)
    return json.dumps({k: v for k, v in env.items() if v is not ...}).encode()


def test_round_trip_keeps_exact_bytes():
    raw = seal(KEY, "desk1", "cmd", BODY)
    opened = open_envelope(raw, "cmd", KEYS)
    assert opened.body == BODY
    assert opened.kid == "desk1"
    assert opened.body_bytes == dumps_body(BODY)


def test_body_bytes_are_signed_as_sent_not_reserialised():
    text = b'{"z": 1,   "a": "\\u0444"}'  # odd spacing and escapes: verified as is
    opened = open_envelope(seal(KEY, "desk1", "config", text), "config", KEYS)
    assert opened.body == {"z": 1, "a": "ф"}
    assert opened.body_bytes == text


def _forged_body() -> bytes:
    env = json.loads(seal(KEY, "desk1", "cmd", BODY))
    env["body"] = env["body"].replace('"enable"', '"disable"')
    return json.dumps(env).encode()


def _signed_by_other() -> bytes:
    return seal(OTHER, "desk1", "cmd", BODY)


def _other_purpose() -> bytes:
    return seal(KEY, "desk1", "config", BODY)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "malformed"),
        (b"not json", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b"[1, 2]", "malformed"),
        (json.dumps(BODY).encode(), "unsigned"),  # a bare, unsigned command
        (_env(sig=...), "unsigned"),
        (_env(kid=...), "unsigned"),
        (_env(v=2), "bad_version"),
        (_env(v="1"), "bad_version"),
        (_env(v=True), "bad_version"),
        (_env(p=None), "malformed"),
        (_env(body={"a": 1}), "malformed"),
        (_env(sig=12), "malformed"),
        (_env(kid="desk2"), "unknown_key"),
        (_env(sig="!!!"), "bad_signature"),
        (_env(sig=base64.b64encode(b"x" * 63).decode()), "bad_signature"),
        (_env(sig=base64.b64encode(b"x" * 64).decode()), "bad_signature"),
        (_forged_body(), "bad_signature"),
        (_signed_by_other(), "bad_signature"),
        (_other_purpose(), "wrong_purpose"),
        (b" " * (256 * 1024 + 1), "too_large"),
    ],
)
def test_rejections(raw, code):
    with pytest.raises(EnvelopeError) as err:
        open_envelope(raw, "cmd", KEYS)
    assert err.value.code == code


def test_signed_non_object_body_is_malformed():
    raw = seal(KEY, "desk1", "cmd", b"[1]")
    with pytest.raises(EnvelopeError) as err:
        open_envelope(raw, "cmd", KEYS)
    assert err.value.code == "malformed"


def test_purpose_is_bound_into_the_signature():
    env = json.loads(seal(KEY, "desk1", "config", BODY))
    env["p"] = "cmd"  # relabelled: the signature was over "config"
    with pytest.raises(EnvelopeError) as err:
        open_envelope(json.dumps(env).encode(), "cmd", KEYS)
    assert err.value.code == "bad_signature"


def test_seal_refuses_unknown_purpose_and_bad_key_id():
    with pytest.raises(ValueError):
        seal(KEY, "desk1", "nope", BODY)
    with pytest.raises(ValueError):
        seal(KEY, "desk/1", "cmd", BODY)


def test_peek_never_raises():
    assert peek_body(b"junk") == {}
    assert peek_body(seal(KEY, "desk1", "cmd", BODY))["cmd_id"] == "c1"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_never_verify(raw):
    with pytest.raises(EnvelopeError):
        open_envelope(raw, "cmd", KEYS)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_any_single_byte_change_is_rejected(data):
    raw = bytearray(seal(KEY, "desk1", "cmd", BODY))
    i = data.draw(st.integers(0, len(raw) - 1))
    b = data.draw(st.integers(0, 255).filter(lambda x: x != raw[i]))
    raw[i] = b
    try:
        opened = open_envelope(bytes(raw), "cmd", KEYS)
    except EnvelopeError:
        return
    # A change that still verifies must be one JSON cannot see (e.g. an escape of the
    # same character): the signed body is then exactly the original.
    assert opened.body == BODY


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=10),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
            max_leaves=10,
        ),
        max_size=5,
    )
)
def test_fuzz_any_body_round_trips(body):
    assert open_envelope(seal(KEY, "desk1", "ack", body), "ack", KEYS).body == body
