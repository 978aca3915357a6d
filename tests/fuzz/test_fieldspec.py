"""The one table reader (drivers/fieldspec.py) that every reader of outside data uses.

Table-driven cases pin each rule (type, bool is not int, int as float, range, choices,
check, required, unknown key, dotted path); hypothesis throws arbitrary tables at a spec
and insists the answer is either values that fit their fields or an `Invalid` naming a key
of the table or the spec, never another exception.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kiosk.config
from drivers.fieldspec import (
    Field,
    Invalid,
    Problem,
    Table,
    lookup,
    read_dataclass,
    read_fields,
)
from kiosk.catalog import DEMO_CATALOG
from sync.commands import ARGS, CommandError, parse_command
from sync.desk_config import ConfigDocError, parse_config_doc

ROOT = Path(__file__).resolve().parents[2]

SPEC: dict[str, Field] = {
    "name": Field(str),
    "port": Field(int, 1883, "a positive integer", lo=1, hi=65535),
    "ratio": Field(float, 0.5, lo=0, hi=1),
    "mode": Field(str, "warn", choices=("warn", "out_of_service")),
    "on": Field(bool, False),
    "phone": Field(str, None, "a phone number", check=lambda p: sum(c.isdigit() for c in p) >= 3),
}


@pytest.mark.parametrize(
    ("table", "path", "kind", "message"),
    [
        ({}, "cfg.name", Problem.REQUIRED, "key 'cfg.name' is required"),
        ({"name": 5}, "cfg.name", Problem.VALUE, "key 'cfg.name' must be str, got 5"),
        ({"name": "a", "port": True}, "cfg.port", Problem.VALUE,
         "key 'cfg.port' must be a positive integer, got True"),
        ({"name": "a", "port": 0}, "cfg.port", Problem.VALUE,
         "key 'cfg.port' must be a positive integer, got 0"),
        ({"name": "a", "port": 70000}, "cfg.port", Problem.VALUE,
         "key 'cfg.port' must be a positive integer, got 70000"),
        ({"name": "a", "ratio": 2}, "cfg.ratio", Problem.VALUE, "key 'cfg.ratio' must be float"),
        ({"name": "a", "mode": "ignore"}, "cfg.mode", Problem.VALUE,
         "key 'cfg.mode' must be one of warn, out_of_service, got 'ignore'"),
        ({"name": "a", "on": 1}, "cfg.on", Problem.VALUE, "key 'cfg.on' must be bool, got 1"),
        ({"name": "a", "phone": "call us"}, "cfg.phone", Problem.VALUE,
         "key 'cfg.phone' must be a phone number, got 'call us'"),
        ({"name": "a", "prot": 1}, "cfg.prot", Problem.UNKNOWN,
         "key 'cfg.prot' is not a known setting"),
    ],
)
def test_each_rule_refuses_with_the_dotted_path(
    table: dict[str, Any], path: str, kind: Problem, message: str
) -> None:
    with pytest.raises(Invalid) as err:
        read_fields(table, SPEC, "cfg")
    assert err.value.path == path
    assert err.value.kind is kind
    assert message in str(err.value)


def test_defaults_fill_absent_keys_and_an_int_is_taken_as_a_float() -> None:
    out = read_fields({"name": "x", "ratio": 1}, SPEC)
    assert out == {"name": "x", "port": 1883, "ratio": 1.0, "mode": "warn", "on": False,
                   "phone": None}
    assert isinstance(out["ratio"], float)


def test_nested_tables_and_lists_name_their_place() -> None:
    root = Table({"catalog": {"providers": [{"id": "a"}, {"id": 7}]}})
    providers = list(root.sub("catalog").tables("providers"))
    assert [t.path for t in providers] == ["catalog.providers[0]", "catalog.providers[1]"]
    with pytest.raises(Invalid, match=r"key 'catalog.providers\[1\].id' must be str, got 7"):
        providers[1].get("id", Field(str))
    with pytest.raises(Invalid) as err:
        Table({"catalog": 3}).sub("catalog")
    assert err.value.kind is Problem.TABLE and err.value.path == "catalog"


def test_lookup_walks_dotted_keys() -> None:
    data = {"timing": {"poll_ms": 200, "attempts": "3"}}
    assert lookup(data, "timing.poll_ms", Field(int)) == 200
    assert lookup(data, "timing.missing", Field(int, 7)) == 7
    assert lookup(data, "serial.baudrate", Field(int, 9600)) == 9600
    with pytest.raises(Invalid, match=r"key 'timing\.attempts' must be int, got '3'"):
        lookup(data, "timing.attempts", Field(int, 3))
    with pytest.raises(Invalid, match=r"key 'serial\.baudrate' is required"):
        lookup(data, "serial.baudrate", Field(int))


@dataclass(frozen=True)
class Timeouts:
    account: int = 70
    prompt: int = 15


def test_read_dataclass_takes_the_dataclass_defaults() -> None:
    spec = {name: Field(int, what="a positive integer", lo=1) for name in ("account", "prompt")}
    assert read_dataclass(Timeouts, {"account": 90}, spec, "timeouts") == Timeouts(90, 15)
    with pytest.raises(Invalid, match=r"key 'timeouts\.prompt' must be a positive integer"):
        read_dataclass(Timeouts, {"prompt": -1}, spec, "timeouts")


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=False),
    st.text(max_size=12),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8,
)
tables = st.dictionaries(st.sampled_from([*SPEC, "bogus", "Name", ""]), anything, max_size=7)


@settings(max_examples=500, deadline=None)
@given(tables)
def test_any_table_gives_fitting_values_or_invalid_naming_a_key(table: dict[str, Any]) -> None:
    try:
        out = read_fields(table, SPEC, "t")
    except Invalid as exc:
        assert exc.path.startswith("t.")
        key = exc.path[2:]
        assert key in SPEC or key in table
        if exc.kind is Problem.UNKNOWN:
            assert key == sorted(set(table) - set(SPEC))[0]
        elif exc.kind is Problem.REQUIRED:
            assert key not in table and SPEC[key].required
        else:
            assert exc.kind is Problem.VALUE and table[key] is exc.value
    else:
        assert set(out) == set(SPEC) and set(table) <= set(SPEC)
        for key, field in SPEC.items():
            if key not in table:
                assert out[key] == field.default
        assert isinstance(out["port"], int) and not isinstance(out["port"], bool)
        assert 1 <= out["port"] <= 65535
        assert isinstance(out["ratio"], float) and 0 <= out["ratio"] <= 1
        assert out["mode"] in ("warn", "out_of_service")


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries(
    {"name": st.text(max_size=10)},
    optional={
        "port": st.integers(1, 65535),
        "ratio": st.floats(0, 1) | st.integers(0, 1),
        "mode": st.sampled_from(["warn", "out_of_service"]),
        "on": st.booleans(),
    },
))
def test_every_fitting_table_is_read_back_unchanged(table: dict[str, Any]) -> None:
    out = read_fields(table, SPEC)
    for key, value in table.items():
        assert out[key] == value


def test_desk_config_uses_only_the_public_names_of_kiosk_config() -> None:
    """sync/ reads the desk's catalog through kiosk.config's public door (`__all__`),
    never its table readers."""
    public = set(kiosk.config.__all__)
    for path in sorted((ROOT / "sync").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "kiosk.config":
                names = {alias.name for alias in node.names}
                assert names <= public, f"{path}: {sorted(names - public)}"


COMMAND_KEYS = ["cmd_id", "terminal_id", "type", "args", "issued_ms", "expires_ms", "seq",
                "phone", "payment_id", "account", "reason", "x"]
DOC_KEYS = ["version", "terminal_id", "issued_ms", "support_phone", "catalog", "commissions",
            "help_texts", "technician_pin_hash", "providers", "x"]
bodies = st.recursive(
    scalars | st.sampled_from(["set_support_phone", "reprocess", "T1", "*", "scrypt$1"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(COMMAND_KEYS + DOC_KEYS), inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(COMMAND_KEYS), bodies, max_size=8))
def test_desk_commands_only_ever_raise_their_coded_error(body: dict[str, Any]) -> None:
    try:
        cmd = parse_command(body)
    except CommandError as exc:
        assert exc.code in {"malformed", "unknown_type", "bad_args"}
    else:
        assert cmd.type in ARGS and set(cmd.args) == set(ARGS[cmd.type])


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(DOC_KEYS), bodies, max_size=8))
def test_desk_config_documents_only_ever_raise_their_coded_error(body: dict[str, Any]) -> None:
    try:
        doc = parse_config_doc(body, "T1", DEMO_CATALOG)
    except ConfigDocError as exc:
        assert exc.code in {"malformed", "wrong_terminal", "bad_value"}
    else:
        assert doc.version >= 1
