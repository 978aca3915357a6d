"""The local API: versioned JSON lines over a Unix socket (docs/local-api.md).

The UI and the technician CLI are clients. A bad message gets a typed error reply and the
connection lives on; a slow client only ever has the newest snapshot waiting for it, so it
cannot make the core buffer without bound. The socket is created 0660 in a 0750 folder:
only the kiosk user and group reach it, and technician operations need a PIN session too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from drivers.fieldspec import REQUIRED, Field, Invalid, Problem, Table
from kiosk import service
from kiosk.check_code import CheckRefused
from kiosk.coded_error import CodedError
from kiosk.engine import IntentError, PaymentEngine
from kiosk.help_events import HelpEventError, record_help_event
from kiosk.ledger import LedgerError
from kiosk.technician import Channel, TechnicianAuthError

log = logging.getLogger("kiosk.api")

API_VERSION = 1
MAX_LINE = 64 * 1024
MAX_OFFSET = 2**31 - 1  # far beyond any ledger; SQLite's own limit is 2**63 - 1
SOCKET_MODE = 0o660
DIR_MODE = 0o750


class ApiError(CodedError):
    """A request refused; the code goes to the client (docs/local-api.md)."""


def _read(msg: dict[str, Any], key: str, field: Field) -> Any:
    """One field of a request (drivers.fieldspec); a refusal is a bad_request naming it."""
    try:
        return Table(msg).get(key, field)
    except Invalid as exc:
        if exc.kind is Problem.REQUIRED:
            raise ApiError("bad_request", f"missing field '{key}'") from exc
        raise ApiError("bad_request", f"field '{key}' {exc.problem}") from exc


def _arg(msg: dict[str, Any], key: str, expected: type, default: Any = REQUIRED) -> Any:
    return _read(msg, key, Field(expected, default))


MAX_LIMIT = 1000


def _limit(msg: dict[str, Any], default: int = 50) -> int:
    """A row count, 1..MAX_LIMIT: a huge integer must be a bad request, not a crash."""
    limit: int = _read(msg, "limit", Field(int, default, f"1..{MAX_LIMIT}", lo=1, hi=MAX_LIMIT))
    return limit


class Connection:
    def __init__(
        self, server: ApiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.subscribed = False
        self.latest: dict[str, Any] | None = None
        self.wake = asyncio.Event()
        self.write_lock = asyncio.Lock()

    async def send(self, obj: dict[str, Any]) -> None:
        data = json.dumps({"v": API_VERSION, **obj}, ensure_ascii=False).encode() + b"\n"
        async with self.write_lock:
            self.writer.write(data)
            await self.writer.drain()

    def offer(self, snapshot: dict[str, Any]) -> None:
        """Called in the loop thread: keep only the newest snapshot for this client."""
        self.latest = snapshot
        self.wake.set()

    async def pusher(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            snap, self.latest = self.latest, None
            if snap is not None and self.subscribed:
                await self.send({"push": "snapshot", "snapshot": snap})


class ApiServer:
    def __init__(self, engine: PaymentEngine, path: Path) -> None:
        self.engine = engine
        self.path = path
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The connections that logged a technician in, with their token: a token works
        # only on its own connection, and its session ends when that connection closes.
        # Each channel (screen, shell) has its own session (kiosk.technician.Channel).
        self._tech_conns: dict[Connection, str] = {}
        self._ops: dict[str, Callable[[Connection, dict[str, Any]], Awaitable[Any]]] = {
            "hello": self._op_hello,
            "snapshot": self._op_snapshot,
            "subscribe": self._op_subscribe,
            "unsubscribe": self._op_unsubscribe,
            "catalog": self._op_catalog,
            "intent": self._op_intent,
            "payment_status": self._op_payment_status,
            "help_center": self._op_help_center,
            "help_open": self._op_help_open,
            "help_close": self._op_help_close,
            "help_event": self._op_help_event,
            "customer_reprint": self._op_customer_reprint,
            "payments": self._op_payments,
            "status": self._op_status,
            "tech.login": self._op_tech_login,
            "tech.logout": self._op_tech_logout,
            "tech.counters": self._tech(lambda m: service.counters(self.engine), record=False),
            "tech.events": self._tech(
                lambda m: service.events(
                    self.engine,
                    _limit(m),
                    _arg(m, "device", str, "devices"),
                    _arg(m, "severity", str, "all"),
                ),
                record=False,
            ),
            "tech.encash": self._tech(lambda m: service.encash(self.engine, "technician")),
            "tech.reprint": self._tech(
                lambda m: service.reprint(self.engine, _arg(m, "payment_id", str))
            ),
            "tech.test_print": self._tech(lambda m: service.test_print(self.engine)),
            "tech.acceptor_test": self._tech(
                lambda m: service.acceptor_test(self.engine, _arg(m, "on", bool))
            ),
            "tech.acceptor_test_results": self._tech(
                lambda m: service.acceptor_test_results(self.engine), record=False
            ),
            "tech.restart": self._tech(lambda m: service.request_restart(self.engine)),
            "tech.service": self._tech(
                lambda m: service.set_service_mode(self.engine, _arg(m, "on", bool))
            ),
            "tech.ledger_init": self._tech(
                lambda m: service.ledger_init(
                    self.engine, _arg(m, "confirm", str), _arg(m, "reason", str, "")
                )
            ),
        }

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        created = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if created:  # never change the mode of a folder someone else made (/run, /tmp...)
            with contextlib.suppress(OSError):
                os.chmod(self.path.parent, DIR_MODE)
        # A socket left by a dead core; a live one cannot be here: the daemon holds the
        # data folder's lock (agent.daemon.lock_data_dir) before it starts the server.
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=MAX_LINE
        )
        os.chmod(self.path, SOCKET_MODE)
        self.engine.subscribe(self._on_snapshot)

    async def stop(self) -> None:
        self.engine.unsubscribe(self._on_snapshot)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for conn in list(self.connections):
            conn.writer.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _on_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Engine thread → loop thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def fan_out() -> None:
            for conn in self.connections:
                conn.offer(snapshot)

        loop.call_soon_threadsafe(fan_out)

    # -- one client --------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        pusher = asyncio.create_task(conn.pusher())
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break  # client closed
                except asyncio.LimitOverrunError as exc:
                    # Too long: drop it up to the next newline and say so.
                    await reader.readexactly(exc.consumed)
                    await self._skip_rest_of_line(reader)
                    await conn.send(
                        {
                            "id": None,
                            "ok": False,
                            "error": {
                                "code": "too_long",
                                "message": f"a message is at most {MAX_LINE} bytes",
                            },
                        }
                    )
                    continue
                await self._handle(conn, line)
        except (ConnectionError, OSError):
            pass
        finally:
            pusher.cancel()
            self.connections.discard(conn)
            token = self._tech_conns.pop(conn, None)
            if token is not None:  # the technician's client went away: log it out
                self.engine.technician_logout(token)
            writer.close()

    async def _skip_rest_of_line(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                await reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await reader.readexactly(exc.consumed)

    async def _handle(self, conn: Connection, line: bytes) -> None:
        msg_id: Any = None
        try:
            try:
                msg = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError("bad_json", f"not a JSON object: {exc}") from exc
            except RecursionError as exc:
                raise ApiError("bad_request", "a message is nested too deeply") from exc
            if not isinstance(msg, dict):
                raise ApiError("bad_json", "a message must be a JSON object")
            try:  # "\ud800" parses, but could never be stored, sent or printed
                json.dumps(msg, ensure_ascii=False).encode()
            except UnicodeEncodeError as exc:
                raise ApiError("bad_request", "strings must be valid Unicode text") from exc
            msg_id = msg.get("id")
            if not isinstance(msg_id, str | int | type(None)) or isinstance(msg_id, bool):
                msg_id = None
                raise ApiError("bad_request", "field 'id' must be a string or an integer")
            version = msg.get("v")
            if not isinstance(version, int) or isinstance(version, bool):
                raise ApiError("bad_request", "field 'v' must be an integer (the API version)")
            if version != API_VERSION:
                raise ApiError("bad_version", f"this core speaks API version {API_VERSION}")
            op = msg.get("op")
            handler = self._ops.get(op) if isinstance(op, str) else None
            if handler is None:
                raise ApiError("unknown_op", f"unknown op {op!r}")
            result = await handler(conn, msg)
            await conn.send({"id": msg_id, "ok": True, "result": result})
        except (ApiError, IntentError, TechnicianAuthError, CheckRefused) as exc:
            await conn.send({"id": msg_id, "ok": False, "error": exc.as_dict()})
        except LedgerError as exc:
            await conn.send(
                {
                    "id": msg_id,
                    "ok": False,
                    "error": {"code": "ledger_unavailable", "message": str(exc)},
                }
            )
        except (ConnectionError, OSError):
            raise
        except Exception as exc:  # a bug in one op must not take the core down
            log.exception("local API op failed")
            await conn.send(
                {
                    "id": msg_id,
                    "ok": False,
                    "error": {"code": "internal", "message": type(exc).__name__},
                }
            )

    # -- ops ---------------------------------------------------------------------------
    async def _op_hello(self, conn: Connection, msg: dict[str, Any]) -> Any:
        conn.subscribed = _arg(msg, "subscribe", bool, True)
        return {
            "api": API_VERSION,
            "terminal_id": self.engine.config.terminal.id,
            "snapshot": self.engine.snapshot(),
        }

    async def _op_snapshot(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return self.engine.snapshot()

    async def _op_subscribe(self, conn: Connection, msg: dict[str, Any]) -> Any:
        conn.subscribed = True
        conn.offer(self.engine.snapshot())
        return {}

    async def _op_unsubscribe(self, conn: Connection, msg: dict[str, Any]) -> Any:
        conn.subscribed = False
        return {}

    async def _op_catalog(self, conn: Connection, msg: dict[str, Any]) -> Any:
        cat = self.engine.config.catalog
        return {
            "categories": [{"id": c, "name_ru": ru, "name_en": en} for c, ru, en in cat.categories],
            "providers": [
                {
                    "id": p.id,
                    "name_ru": p.name_ru,
                    "name_en": p.name_en,
                    "category": p.category,
                    "account_mask": p.account_mask,
                    "min_minor": p.min_minor,
                    "max_minor": p.max_minor,
                    "currency": p.currency,
                    "bands": [dataclasses.asdict(b) for b in p.bands],
                }
                for p in cat.providers
            ],
        }

    async def _op_intent(self, conn: Connection, msg: dict[str, Any]) -> Any:
        name = _arg(msg, "intent", str)
        args = _arg(msg, "args", dict, {})
        return await asyncio.to_thread(self.engine.intent, name, args)

    # -- help (docs/self-service.md): never on the payment path ------------------------
    async def _op_help_center(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return {"center": self.engine.help_center.to_dict(),
                "config_version": self.engine.config_version}

    async def _op_help_open(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return {"help_code": self.engine.open_help()}

    async def _op_help_close(self, conn: Connection, msg: dict[str, Any]) -> Any:
        self.engine.close_help()
        return {}

    async def _op_help_event(self, conn: Connection, msg: dict[str, Any]) -> Any:
        """One help counter (or a call-back request) for the desk: a ledger event written
        on a worker thread without the engine's lock, so a bill never waits for it."""
        kind, args = _arg(msg, "kind", str), _arg(msg, "args", dict, {})
        try:
            return await asyncio.to_thread(record_help_event, self.engine, kind, args)
        except HelpEventError as exc:
            raise ApiError("bad_request", str(exc)) from exc

    async def _op_payment_status(self, conn: Connection, msg: dict[str, Any]) -> Any:
        """The customer's "check my payment": id AND check code (kiosk/check_code.py)."""
        pid = _arg(msg, "payment_id", str)
        code = _arg(msg, "check_code", str)
        return await asyncio.to_thread(service.check_payment, self.engine, pid, code)

    async def _op_customer_reprint(self, conn: Connection, msg: dict[str, Any]) -> Any:
        pid = _arg(msg, "payment_id", str)
        code = _arg(msg, "check_code", str)
        return await asyncio.to_thread(service.customer_reprint, self.engine, pid, code)

    async def _op_payments(self, conn: Connection, msg: dict[str, Any]) -> Any:
        limit = _limit(msg)
        offset = _arg(msg, "offset", int, 0)
        if not 0 <= offset <= MAX_OFFSET:
            raise ApiError("bad_request", f"offset must be 0..{MAX_OFFSET}")
        rows = await asyncio.to_thread(self.engine.ledger.list_payments, limit, offset)
        for row in rows:  # no client of the socket lists check codes (docs/local-api.md)
            row.pop("check_code", None)
        return rows

    async def _op_status(self, conn: Connection, msg: dict[str, Any]) -> Any:
        return await asyncio.to_thread(service.status, self.engine)

    async def _op_tech_login(self, conn: Connection, msg: dict[str, Any]) -> Any:
        pin = _arg(msg, "pin", str)
        name = _arg(msg, "channel", str, Channel.SHELL.value)
        try:
            channel = Channel(name)
        except ValueError:
            allowed = [c.value for c in Channel]
            raise ApiError(
                "bad_request", f"channel must be one of {', '.join(allowed)}",
                {"field": "channel", "allowed": allowed},
            ) from None
        # records the attempt for the desk; a new session on this channel only
        token = self.engine.technician_login(pin, channel)
        old = self._tech_conns.get(conn)
        if old is not None and old != token:
            self.engine.technician_logout(old)
        self._tech_conns[conn] = token
        return {
            "token": token,
            "channel": channel.value,
            "expires_after_s": self.engine.config.technician.session_timeout_s,
        }

    async def _op_tech_logout(self, conn: Connection, msg: dict[str, Any]) -> Any:
        """Only the connection that logged in logs out (its token optional there): any
        other client of the socket must not end a technician's session."""
        token = self._tech_conns.pop(conn, None)
        if token is None:
            raise TechnicianAuthError("not_authorized", "technician login required")
        self.engine.technician_logout(token)
        return {}

    def _tech(
        self, op: Callable[[dict[str, Any]], Any], *, record: bool = True
    ) -> Callable[[Connection, dict[str, Any]], Awaitable[Any]]:
        """A technician op; `record`: it changes something, so it is an event for the desk
        (reading a page is not)."""

        async def handler(conn: Connection, msg: dict[str, Any]) -> Any:
            token = msg.get("token")
            if self._tech_conns.get(conn) != token:  # a token works on its own connection
                raise TechnicianAuthError("not_authorized", "technician login required")
            self.engine.technician_check(token, msg.get("op"), record=record)
            return await asyncio.to_thread(op, msg)

        return handler
