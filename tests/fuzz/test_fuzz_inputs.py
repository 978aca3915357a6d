"""Fuzzing of the parsers that take outside input: configuration, firmware profiles and the
local API. Whatever arrives, the answer is a clear error of the documented kind, and the
core keeps serving (bad input gets a clear error and loses nothing)."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.profiles import ProfileError, load_profile
from kiosk.config import ConfigError, parse_config
from tests.core.daemon import Core, write_config

SECTIONS = [
    "terminal",
    "paths",
    "acceptor",
    "printer",
    "timeouts",
    "technician",
    "mqtt",
    "catalog",
    "bogus",
]
KEYS = [
    "id",
    "support_phone",
    "kind",
    "port",
    "profile",
    "account",
    "pin_hash",
    "enabled",
    "providers",
    "categories",
    "data_dir",
    "unavailable_policy",
    "min_minor",
    "x",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.text(max_size=20),
    st.floats(allow_nan=False),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=10,
)
configs = st.dictionaries(
    st.sampled_from(SECTIONS),
    st.one_of(values, st.dictionaries(st.sampled_from(KEYS), values, max_size=4)),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(configs)
def test_config_parser_only_ever_raises_config_error(data):
    try:
        config = parse_config(data, "fuzz.toml", Path("/tmp"))
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml")
    else:
        assert config.terminal.id


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_profile_loader_only_ever_raises_profile_error(tmp_path, raw):
    path = tmp_path / "p.toml"
    path.write_bytes(raw)
    try:
        load_profile(path)
    except ProfileError as exc:
        assert str(path) in str(exc)


def test_profile_loader_on_mutated_real_profiles(tmp_path):
    """Every real profile with each top-level key removed gives a ProfileError naming it."""
    root = Path(__file__).resolve().parents[2] / "firmware_profiles"
    for source in sorted(root.glob("*.toml")):
        data = tomllib.loads(source.read_text())
        for section in ("profile", "serial", "identify"):
            broken = {k: v for k, v in data.items() if k != section}
            path = tmp_path / source.name
            path.write_text(_dump(broken))
            with pytest.raises(ProfileError, match=f"'{section}"):
                load_profile(path)


def _dump(data: dict) -> str:
    """A tiny TOML writer for the profile shapes (tables of scalars and lists)."""
    lines: list[str] = []
    for table, body in data.items():
        if not isinstance(body, dict):
            lines.insert(0, f"{table} = {json.dumps(body)}")
            continue
        lines.append(f"[{table}]")
        for key, value in body.items():
            if isinstance(value, dict):
                continue
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    work = tmp_path_factory.mktemp("fuzzcore")
    c = Core(write_config(work), work)
    c.start()
    yield c
    assert c.stop() == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
OPS = [
    "hello",
    "snapshot",
    "intent",
    "payment_status",
    "customer_reprint",
    "payments",
    "status",
    "tech.login",
    "tech.encash",
    "catalog",
    "nope",
]
messages = st.one_of(
    st.binary(max_size=200).filter(lambda b: b"\n" not in b),
    st.fixed_dictionaries(
        {"v": st.sampled_from([1, 2, "1", None]), "op": st.sampled_from(OPS)},
        optional={
            "id": json_values,
            "intent": st.sampled_from(["start", "pay", "x", 3]),
            "args": json_values,
            "payment_id": json_values,
            "check_code": json_values | st.text(alphabet="0123456789 -", max_size=8),
            "limit": json_values,
            "pin": json_values,
            "token": json_values,
        },
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(messages, min_size=1, max_size=5))
def test_local_api_answers_every_message_and_survives(core, batch):
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(core.socket))
        reader = sock.makefile("rb")
        for raw in batch:
            sock.sendall(raw + b"\n")
            while True:
                reply = json.loads(reader.readline())
                if "push" not in reply:
                    break
            assert reply["v"] == 1 and isinstance(reply["ok"], bool)
            if not reply["ok"]:
                assert reply["error"]["code"] and reply["error"]["message"]
                assert reply["error"]["code"] != "internal", (raw, reply)
        # whatever happened, the customer can still be served
        sock.sendall(b'{"v": 1, "id": "end", "op": "intent", "intent": "cancel"}\n')
        while True:
            reply = json.loads(reader.readline())
            if reply.get("id") == "end":
                break
    assert core.proc.poll() is None
