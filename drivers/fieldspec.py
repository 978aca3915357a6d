"""One way to read untrusted tables (TOML files, JSON bodies) into typed values.

Every reader of outside data (the terminal's configuration, firmware profiles, the desk's
config document, desk commands, the local API's fields) states, per key, a `Field`: the
accepted types, a default or "required", a range, the allowed choices, an extra check,
and how the expectation reads to a person. A value that does not fit raises `Invalid`
with the dotted path of the key ("mqtt.port", "catalog.providers[0].id"); unknown keys
are refused too, because a typo must never fall back to a default silently.

`Invalid` is the only error here; each reader wraps it into its own error type (with the
file name, or the refusal code the desk reads), so messages differ in prefix, not in how
a field is checked.

It lives in drivers/, the bottom layer, because every layer that reads outside data may
import drivers/ (docs/architecture.md, "Layers and imports"); it imports nothing of the
project.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


class _Required(enum.Enum):
    REQUIRED = "required"


REQUIRED = _Required.REQUIRED
"""A `Field` default: the key must be present."""


class Problem(enum.Enum):
    """What is wrong, so a reader can word or code it its own way."""

    VALUE = "value"  # wrong type, out of range, not a choice, failed its check
    REQUIRED = "required"  # a required key is missing
    UNKNOWN = "unknown"  # a key nobody reads
    TABLE = "table"  # a table was expected


_NO_VALUE = object()


class Invalid(ValueError):
    """A value that does not fit its field; `path` is the dotted key, `problem` what is
    wrong ("must be a positive integer"), `value` what was found (if anything)."""

    def __init__(self, path: str, kind: Problem, problem: str, value: object = _NO_VALUE
                 ) -> None:
        self.path = path
        self.kind = kind
        self.problem = problem
        self.value = value
        super().__init__(str(self))

    @property
    def key(self) -> str:
        """The last part of the path ("port" of "mqtt.port")."""
        return self.path.rsplit(".", 1)[-1]

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_VALUE

    def __str__(self) -> str:
        got = f", got {self.value!r}" if self.has_value else ""
        return f"key '{self.path}' {self.problem}{got}"


def join(path: str, key: str | int) -> str:
    """The path of `key` inside the table at `path` (`a.b`, `a[3]`)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _types_of(accepted: type | types.UnionType | tuple[type, ...]) -> tuple[type, ...]:
    if isinstance(accepted, tuple):
        return accepted
    if isinstance(accepted, types.UnionType):
        return typing.get_args(accepted)
    return (accepted,)


def _type_name(accepted: tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in accepted)


@dataclass(frozen=True)
class Field:
    """How one key is read. `types` accepts a type, a union (`int | float`) or a tuple; a
    bool never counts as an int, an int counts as a float (and becomes one unless `int`
    is accepted as well). `lo`/`hi` are inclusive bounds; `check` is any extra rule;
    `what` is the expectation as a person reads it ("a positive integer"), used in every
    refusal of the field (default: the type's name, or "one of ..." with `choices`)."""

    types: type | types.UnionType | tuple[type, ...]
    default: Any = REQUIRED
    what: str = ""
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def expectation(self) -> str:
        if self.what:
            return self.what
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return _type_name(_types_of(self.types))

    def read(self, value: Any, path: str) -> Any:
        """`value` checked and converted, or `Invalid` naming `path`."""
        accepted = _types_of(self.types)
        if isinstance(value, bool) and bool not in accepted:
            ok = False
        elif isinstance(value, int) and not isinstance(value, bool) and float in accepted:
            ok = True
            if int not in accepted:
                value = float(value)
        else:
            ok = isinstance(value, accepted)
        ok = ok and (self.lo is None or value >= self.lo)
        ok = ok and (self.hi is None or value <= self.hi)
        ok = ok and (self.choices is None or value in self.choices)
        ok = ok and (self.check is None or self.check(value))
        if not ok:
            raise Invalid(path, Problem.VALUE, f"must be {self.expectation()}", value)
        return value


class Table:
    """A cursor over one table that remembers which keys were read, so `finish()` can
    refuse the ones nobody reads. `path` is the table's own dotted path ("" at the root).
    """

    def __init__(self, table: Any, path: str = "") -> None:
        if not isinstance(table, dict):
            raise Invalid(path, Problem.TABLE, "must be a table", type(table).__name__)
        self.path = path
        self.data: dict[str, Any] = table
        self.used: set[str] = set()

    def where(self, key: str | int) -> str:
        return join(self.path, key)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, field: Field) -> Any:
        """The value of `key` read by `field`; its default when absent."""
        self.used.add(key)
        if key not in self.data:
            if field.required:
                raise Invalid(self.where(key), Problem.REQUIRED, "is required")
            return field.default
        return field.read(self.data[key], self.where(key))

    def sub(self, key: str, required: bool = False) -> Table:
        """The table under `key` (an empty one when absent and not required)."""
        self.used.add(key)
        if required and key not in self.data:
            raise Invalid(self.where(key), Problem.REQUIRED, "is required")
        return Table(self.data.get(key, {}), self.where(key))

    def tables(self, key: str) -> Iterator[Table]:
        """Each element of the list under `key` as a table (`key[i]` in paths)."""
        items = self.get(key, Field(list, default=[], what="a list"))
        for i, item in enumerate(items):
            yield Table(item, join(self.where(key), i))

    def finish(self) -> None:
        """Refuse the first key (in sorted order) that nobody read."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise Invalid(self.where(unknown[0]), Problem.UNKNOWN, "is not a known setting")


def read_fields(table: Any, spec: Mapping[str, Field], path: str = "") -> dict[str, Any]:
    """Every key of `spec` read from `table` (defaults for absent ones); unknown keys
    are refused. The declarative form of `Table`."""
    cursor = Table(table, path)
    out = {key: cursor.get(key, field) for key, field in spec.items()}
    cursor.finish()
    return out


def read_dataclass(cls: type[T], table: Any, spec: Mapping[str, Field], path: str = "") -> T:
    """An instance of the dataclass `cls` from `table`: a field in `spec` without a
    default of its own takes the dataclass's default; unknown keys are refused."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        for f in fields(cls)
        if f.default is not MISSING or f.default_factory is not MISSING
    }
    completed = {
        key: field if not field.required or key not in defaults
        else Field(field.types, defaults[key], field.what, field.lo, field.hi, field.choices,
                   field.check)
        for key, field in spec.items()
    }
    return cls(**read_fields(table, completed, path))


def lookup(data: Any, dotted: str, field: Field) -> Any:
    """The value at `dotted` ("timing.poll_ms") inside nested tables, read by `field`;
    its default when a table on the way or the key is absent."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if field.required:
                raise Invalid(dotted, Problem.REQUIRED, "is required")
            return field.default
        node = node[part]
    return field.read(node, dotted)
