"""Desk commands: the signed body's shape and the checks before anything runs (pure).

Body of a `cmd` envelope (sync/envelope.py, purpose "cmd"):

    {"cmd_id": "…", "terminal_id": "T0001", "type": "set_support_phone",
     "args": {…}, "issued_ms": 1767…, "expires_ms": 1767…, "seq": 42}

Order of checks in the agent: envelope signature and key id → shape (parse_command) →
audience and times (check_fresh) → already executed (desk_commands) → sequence above the
key's high-water mark → execute and record in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from drivers.fieldspec import Field, Invalid, Problem, read_fields
from kiosk.coded_error import CodedError

ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
PAYMENT_ID_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
MAX_LIFETIME_MS = 7 * 24 * 3600 * 1000
# A command's sequence may be at most this far above the key's high-water mark: a desk
# counts 1, 2, 3 … per terminal, so a bigger jump is a bug (or a clock) and must not
# lock out every later command (docs/mqtt.md, "Sequence").
MAX_SEQ_STEP = 1_000_000

TYPES = (
    "set_support_phone",
    "reprocess",
    "reprocess_unclaimed",
    "disable",
    "enable",
    "request_health",
    "restart",
    "report_funnel",  # today's funnel counts so far, as a funnel_report event
)


class CommandError(CodedError, ValueError):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(code, message)
        self.extra = extra  # more fields for the refusal (e.g. last_seq)


@dataclass(frozen=True)
class Command:
    cmd_id: str
    terminal_id: str
    type: str
    args: dict[str, Any]
    issued_ms: int
    expires_ms: int
    seq: int


def valid_phone(phone: str) -> bool:
    return sum(ch.isdigit() for ch in phone) >= 3 and len(phone) <= 32 and phone.isprintable()


MAX_INT = 2**53
MAX_TEXT = 200
MAX_ID = 64
MAX_REPROCESS_COUNT = 2**31 - 1


def _text(max_len: int, required: bool = True) -> Field:
    """A string of at most `max_len`; a required one is not blank. An optional one may
    be absent or null (read as "")."""
    if required:
        return Field(str, what=f"a string of at most {max_len}",
                     check=lambda v: bool(v.strip()) and len(v) <= max_len)
    return Field((str, type(None)), "", f"a string of at most {max_len}",
                 check=lambda v: v is None or len(v) <= max_len)


def _account(value: str) -> bool:
    return len(value) <= MAX_ID and value.isdigit() and value.isascii()


def _count(value: int | None) -> bool:
    return value is None or 0 <= value <= MAX_REPROCESS_COUNT


_ID = Field(str, what=f"1-{MAX_ID} of [A-Za-z0-9_.:-]", check=lambda v: bool(ID_RE.match(v)))
_PAYMENT_ID = Field(str, what="a payment id", check=lambda v: bool(PAYMENT_ID_RE.match(v)))
_ACCOUNT = Field(str, what="digits", check=_account)
_TIME_MS = Field(int, what="a non-negative integer", lo=0, hi=MAX_INT)

BODY_FIELDS: dict[str, Field] = {
    "cmd_id": _ID,
    "terminal_id": Field(str, what="a string", check=bool),
    "type": Field(str, choices=TYPES),
    "args": Field(dict, {}, "an object"),
    "issued_ms": _TIME_MS,
    "expires_ms": _TIME_MS,
    "seq": _TIME_MS,
}
"""The body's fields (drivers.fieldspec): every refusal is "malformed", but for "type"."""

ARGS: dict[str, dict[str, Field]] = {
    "set_support_phone": {"phone": Field(str, what="a phone number", check=valid_phone)},
    "reprocess": {
        "payment_id": _PAYMENT_ID,
        "account": _ACCOUNT,
        "reason": _text(MAX_TEXT, required=False),
        "reprocess_count": Field((int, type(None)), None, "a non-negative integer",
                                 check=_count),
    },
    "reprocess_unclaimed": {
        "record_id": Field(str, what="a record id", check=lambda v: bool(PAYMENT_ID_RE.match(v))),
        "provider_id": _text(MAX_ID),
        "account": _ACCOUNT,
        "reason": _text(MAX_TEXT, required=False),
    },
    "disable": {"reason": _text(MAX_TEXT, required=False)},
    "enable": {},
    "request_health": {},
    "restart": {},
    "report_funnel": {},
}
"""Each command type's arguments; a refusal of any of them is "bad_args"."""


def _check_args(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    try:
        out = read_fields(args, ARGS[kind], "args")
    except Invalid as exc:
        if exc.kind is Problem.UNKNOWN:
            raise CommandError("bad_args", f"unknown argument {exc.key[:32]!r} for {kind}"
                               ) from exc
        raise CommandError("bad_args", f"{exc.path} {exc.problem}") from exc
    if "reason" in out and out["reason"] is None:
        out["reason"] = ""
    return out


def parse_command(body: dict[str, Any]) -> Command:
    """The shape of a verified body; raises CommandError("malformed"/"bad_args"/...)."""
    extra = sorted(set(body) - set(BODY_FIELDS))
    if extra:
        raise CommandError("malformed", f"unknown field {extra[0][:32]!r}")
    try:
        fields = read_fields(body, BODY_FIELDS)
    except Invalid as exc:
        if exc.path == "type":
            kind = str(body.get("type"))[:32]
            raise CommandError("unknown_type", f"unknown command type {kind!r}") from exc
        raise CommandError("malformed", f"{exc.path} {exc.problem}") from exc
    kind, issued, expires, seq = (fields[k] for k in ("type", "issued_ms", "expires_ms", "seq"))
    if seq == 0:
        raise CommandError("malformed", "seq starts at 1")
    if expires <= issued or expires - issued > MAX_LIFETIME_MS:
        raise CommandError("malformed", "expires_ms must be after issued_ms, within 7 days")
    return Command(fields["cmd_id"], fields["terminal_id"], kind,
                   _check_args(kind, fields["args"]), issued, expires, seq)


def check_fresh(cmd: Command, terminal_id: str, now_ms: int, skew_ms: int) -> None:
    """Audience and time window; raises CommandError(wrong_terminal/expired/not_yet_valid).

    Expiry is strict: a command never lives longer than the TTL the desk gave it (by the
    terminal's clock; a terminal clock that runs ahead shortens it). `skew_ms` is allowed
    only for "issued in the future" (a desk clock slightly ahead). Replay protection
    rests on the command id and the per-key sequence, not on time."""
    if cmd.terminal_id != terminal_id:
        raise CommandError("wrong_terminal", f"addressed to {cmd.terminal_id[:32]!r}")
    if now_ms > cmd.expires_ms:
        raise CommandError("expired", f"the command expired {now_ms - cmd.expires_ms} ms ago")
    if cmd.issued_ms > now_ms + skew_ms:
        raise CommandError("not_yet_valid", "the command is issued in the future")


def check_seq(cmd: Command, last_seq: int) -> None:
    """Above the key's high-water mark, by at most MAX_SEQ_STEP. The refusal names the
    mark (`last_seq`), signed in the result, so a desk can continue from it."""
    if cmd.seq <= last_seq:
        raise CommandError(
            "replayed", f"sequence {cmd.seq} is not above {last_seq}", last_seq=last_seq
        )
    if cmd.seq - last_seq > MAX_SEQ_STEP:
        raise CommandError(
            "seq_gap",
            f"sequence {cmd.seq} jumps more than {MAX_SEQ_STEP} above {last_seq}",
            last_seq=last_seq,
        )
