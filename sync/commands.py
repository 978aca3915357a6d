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


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if type(value) is not int or value < 0 or value > 2**53:
        raise CommandError("malformed", f"{key} must be a non-negative integer")
    return value


def _str(args: dict[str, Any], key: str, required: bool = True, max_len: int = 200) -> str:
    value = args.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > max_len:
        raise CommandError("bad_args", f"args.{key} must be a string of at most {max_len}")
    return value


def valid_phone(phone: str) -> bool:
    return sum(ch.isdigit() for ch in phone) >= 3 and len(phone) <= 32 and phone.isprintable()


def _check_args(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    allowed: dict[str, tuple[str, ...]] = {
        "set_support_phone": ("phone",),
        "reprocess": ("payment_id", "account", "reason", "reprocess_count"),
        "reprocess_unclaimed": ("record_id", "provider_id", "account", "reason"),
        "disable": ("reason",),
        "enable": (),
        "request_health": (),
        "restart": (),
    }
    extra = sorted(set(args) - set(allowed[kind]))
    if extra:
        raise CommandError("bad_args", f"unknown argument {extra[0]!r} for {kind}")
    if kind == "set_support_phone":
        phone = _str(args, "phone", max_len=32)
        if not valid_phone(phone):
            raise CommandError("bad_args", "args.phone must be a phone number")
        return {"phone": phone}
    if kind == "reprocess":
        pid = _str(args, "payment_id", max_len=64)
        account = _str(args, "account", max_len=64)
        if not PAYMENT_ID_RE.match(pid):
            raise CommandError("bad_args", "args.payment_id is not a payment id")
        if not account.isdigit() or not account.isascii():
            raise CommandError("bad_args", "args.account must be digits")
        expected = args.get("reprocess_count")
        if expected is not None and (type(expected) is not int or not 0 <= expected < 2**31):
            raise CommandError("bad_args", "args.reprocess_count must be a non-negative integer")
        return {"payment_id": pid, "account": account, "reason": _str(args, "reason", False),
                "reprocess_count": expected}
    if kind == "reprocess_unclaimed":
        rid = _str(args, "record_id", max_len=64)
        provider = _str(args, "provider_id", max_len=64)
        account = _str(args, "account", max_len=64)
        if not PAYMENT_ID_RE.match(rid):
            raise CommandError("bad_args", "args.record_id is not a record id")
        if not account.isdigit() or not account.isascii():
            raise CommandError("bad_args", "args.account must be digits")
        return {"record_id": rid, "provider_id": provider, "account": account,
                "reason": _str(args, "reason", False)}
    if kind == "disable":
        return {"reason": _str(args, "reason", False)}
    return {}


def parse_command(body: dict[str, Any]) -> Command:
    """The shape of a verified body; raises CommandError("malformed"/"bad_args"/...)."""
    known = {"cmd_id", "terminal_id", "type", "args", "issued_ms", "expires_ms", "seq"}
    extra = sorted(set(body) - known)
    if extra:
        raise CommandError("malformed", f"unknown field {extra[0][:32]!r}")
    cmd_id, terminal_id, kind = body.get("cmd_id"), body.get("terminal_id"), body.get("type")
    if not isinstance(cmd_id, str) or not ID_RE.match(cmd_id):
        raise CommandError("malformed", "cmd_id must be 1-64 of [A-Za-z0-9_.:-]")
    if not isinstance(terminal_id, str) or not terminal_id:
        raise CommandError("malformed", "terminal_id must be a string")
    if kind not in TYPES:
        raise CommandError("unknown_type", f"unknown command type {str(kind)[:32]!r}")
    args = body.get("args", {})
    if not isinstance(args, dict):
        raise CommandError("malformed", "args must be an object")
    issued, expires, seq = _int(body, "issued_ms"), _int(body, "expires_ms"), _int(body, "seq")
    if seq == 0:
        raise CommandError("malformed", "seq starts at 1")
    if expires <= issued or expires - issued > MAX_LIFETIME_MS:
        raise CommandError("malformed", "expires_ms must be after issued_ms, within 7 days")
    return Command(cmd_id, terminal_id, kind, _check_args(kind, args), issued, expires, seq)


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
