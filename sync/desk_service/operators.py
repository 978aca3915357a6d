"""Operators of the desk page: accounts, logins, sessions, CSRF tokens and the audit trail.

Everything lives in the desk database (revision d0002), so several desk processes serving
the page share it and a restart lifts nothing: a locked account stays locked, a throttled
address stays throttled, a session stays valid until it expires or its operator logs out.

- Passwords: scrypt with a per-hash salt (the technician PIN's format, kiosk/pin.py).
- Lockout: `MAX_FAILURES` wrong passwords in a row lock the account for `LOCKOUT_MS`.
- Rate limit: at most `MAX_CLIENT_FAILURES` failed logins per address per
  `CLIENT_WINDOW_MS`, whichever account they name (guessing many accounts).
- Sessions: a random token in the cookie; only its sha256 is stored.
- CSRF: a random token per session, in every form, compared in constant time.
- Audit: every action, every refusal, with the operator, the time, what and the target.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update

from kiosk.pin import hash_secret, verify_secret
from sync.desk_service import schema as s

MAX_FAILURES = 5  # wrong passwords in a row before the account is locked
LOCKOUT_MS = 15 * 60 * 1000
MAX_CLIENT_FAILURES = 20  # failed logins from one address within the window
CLIENT_WINDOW_MS = 10 * 60 * 1000
SESSION_MS = 12 * 3600 * 1000  # one shift
MIN_PASSWORD = 8
TOKEN_BYTES = 32
LOGIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# verifying against this when the login is unknown costs the same time as a real check
_DUMMY_HASH = hash_secret("not a password", b"kiosk-desk-dummy")


class Role(enum.IntEnum):
    """Ordered: each role may do what the ones below it may."""

    VIEWER = 1  # search, read
    OPERATOR = 2  # + re-process, set a status, disable/enable, support phone
    ADMIN = 3  # + the same, and reading the audit trail of everyone

    @classmethod
    def parse(cls, text: str) -> Role:
        try:
            return cls[text.strip().upper()]
        except KeyError as exc:
            raise ValueError(f"role {text!r}: one of viewer, operator, admin") from exc

    @property
    def label(self) -> str:
        return self.name.lower()


class LoginResult(enum.Enum):
    OK = "ok"
    BAD = "bad_credentials"  # unknown login or wrong password (never said which)
    LOCKED = "locked"  # locked by an admin
    LOCKED_OUT = "locked_out"  # too many wrong passwords: wait
    THROTTLED = "throttled"  # too many failures from this address: wait


@dataclass(frozen=True)
class Session:
    login: str
    role: Role
    csrf: str
    expires_ms: int


def now_ms() -> int:
    return int(time.time() * 1000)


def valid_login(login: str) -> bool:
    return 1 <= len(login) <= s.LOGIN and set(login) <= LOGIN_CHARS


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_ok(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


class Operators:
    """Accounts, sessions and the audit trail on the desk's engine."""

    def __init__(self, engine: Engine, clock: Any = now_ms) -> None:
        self.engine = engine
        self.clock = clock

    # -- accounts ----------------------------------------------------------------------
    def add(self, login: str, password: str, role: Role, replace: bool = False) -> None:
        if not valid_login(login):
            raise ValueError(f"login {login[:70]!r}: 1-64 of letters, digits, '.', '_', '-'")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password has at least {MIN_PASSWORD} characters")
        o = s.operators
        values = dict(password_hash=hash_secret(password), role=role.label, locked=False,
                      failures=0, locked_until_ms=None)
        with self.engine.begin() as conn:
            exists = conn.execute(select(o.c.login).where(o.c.login == login)).first()
            if exists and not replace:
                raise ValueError(f"operator {login!r} exists (--replace to set a new "
                                 "password and role)")
            if exists:
                conn.execute(update(o).where(o.c.login == login).values(**values))
            else:
                conn.execute(insert(o).values(login=login, created_ms=self.clock(), **values))

    def set_locked(self, login: str, locked: bool) -> bool:
        o = s.operators
        with self.engine.begin() as conn:
            done = conn.execute(update(o).where(o.c.login == login).values(
                locked=locked, failures=0, locked_until_ms=None)).rowcount
            if locked:
                conn.execute(delete(s.web_sessions).where(s.web_sessions.c.login == login))
        return bool(done)

    def get(self, login: str) -> dict[str, Any] | None:
        o = s.operators
        with self.engine.connect() as conn:
            row = conn.execute(select(o).where(o.c.login == login)).mappings().first()
        return dict(row) if row else None

    def all(self) -> list[dict[str, Any]]:
        o = s.operators
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(o.c.login, o.c.role, o.c.locked, o.c.failures, o.c.locked_until_ms)
                .order_by(o.c.login)).mappings()]

    # -- login -------------------------------------------------------------------------
    def login(self, login: str, password: str, client: str) -> tuple[LoginResult, str | None]:
        """Check a login; on success a new session token (for the cookie). Every
        attempt is recorded (rate limit) and audited."""
        now = self.clock()
        o, la = s.operators, s.login_attempts
        login = login.strip()[: s.LOGIN]
        client = client[:64]
        with self.engine.connect() as conn:
            recent = conn.execute(select(func.count()).select_from(la).where(
                la.c.client == client, la.c.ok.is_(False),
                la.c.at_ms > now - CLIENT_WINDOW_MS)).scalar_one()
            row = conn.execute(select(o).where(o.c.login == login)).mappings().first()
        result: LoginResult
        if recent >= MAX_CLIENT_FAILURES:
            result = LoginResult.THROTTLED
        elif row is None:
            verify_secret(password, _DUMMY_HASH)
            result = LoginResult.BAD
        elif row["locked"]:
            result = LoginResult.LOCKED
        elif row["locked_until_ms"] and row["locked_until_ms"] > now:
            result = LoginResult.LOCKED_OUT
        elif verify_secret(password, row["password_hash"]):
            result = LoginResult.OK
        else:
            result = LoginResult.BAD
        token = None
        with self.engine.begin() as conn:
            # what no check reads any more (the audit keeps every attempt)
            conn.execute(delete(la).where(la.c.at_ms < now - CLIENT_WINDOW_MS))
            conn.execute(delete(s.web_sessions).where(s.web_sessions.c.expires_ms < now))
            conn.execute(insert(la).values(client=client, login=login or None, at_ms=now,
                                           ok=result is LoginResult.OK))
            detail = None
            if row is not None and result is LoginResult.BAD:
                failures = int(row["failures"]) + 1
                values: dict[str, Any] = {"failures": failures}
                if failures >= MAX_FAILURES:
                    values.update(failures=0, locked_until_ms=now + LOCKOUT_MS)
                    detail = (f"{MAX_FAILURES} wrong passwords in a row: locked for "
                              f"{LOCKOUT_MS // 60000} min")
                conn.execute(update(o).where(o.c.login == login).values(**values))
            if result is LoginResult.OK:
                conn.execute(update(o).where(o.c.login == login).values(
                    failures=0, locked_until_ms=None))
                token = secrets.token_urlsafe(TOKEN_BYTES)
                conn.execute(insert(s.web_sessions).values(
                    token_hash=_token_hash(token), login=login,
                    csrf=secrets.token_urlsafe(TOKEN_BYTES), created_ms=now,
                    expires_ms=now + SESSION_MS))
            self._audit(conn, login if result is LoginResult.OK else None, client, "login",
                        "ok" if result is LoginResult.OK else "refused", None, login,
                        detail or (None if result is LoginResult.OK else result.value))
        return result, token

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        ws, o = s.web_sessions, s.operators
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ws.c.login, ws.c.csrf, ws.c.expires_ms, o.c.role, o.c.locked)
                .join(o, o.c.login == ws.c.login)
                .where(ws.c.token_hash == _token_hash(token))).mappings().first()
        if row is None or row["locked"] or row["expires_ms"] <= self.clock():
            return None
        return Session(row["login"], Role.parse(row["role"]), row["csrf"], row["expires_ms"])

    def logout(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(s.web_sessions).where(
                s.web_sessions.c.token_hash == _token_hash(token)))

    # -- audit -------------------------------------------------------------------------
    def _audit(self, conn: Any, login: str | None, client: str | None, action: str,
               outcome: str, terminal_id: str | None, target: str | None,
               detail: str | None) -> int:
        res = conn.execute(insert(s.audit).values(
            at_ms=self.clock(), login=login, client=(client or "")[:64] or None,
            action=action[: s.SHORT], outcome=outcome[:16],
            terminal_id=(terminal_id or "")[: s.TERMINAL] or None,
            target=(target or "")[: s.REF] or None, detail=detail))
        return int(res.inserted_primary_key[0])

    def audit(self, login: str | None, client: str | None, action: str, outcome: str,
              terminal_id: str | None = None, target: str | None = None,
              detail: str | None = None) -> int:
        with self.engine.begin() as conn:
            return self._audit(conn, login, client, action, outcome, terminal_id, target,
                               detail)

    def audit_rows(self, target: str | None = None, login: str | None = None,
                   audit_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        a = s.audit
        stmt = select(a)
        if target is not None:
            stmt = stmt.where(a.c.target == target)
        if login is not None:
            stmt = stmt.where(a.c.login == login)
        if audit_id is not None:
            stmt = stmt.where(a.c.id == audit_id)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                stmt.order_by(a.c.id.desc()).limit(limit)).mappings()]
