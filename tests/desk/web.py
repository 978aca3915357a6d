"""The desk page for tests: a real terminal paying through a real mosquitto into a desk
worker (SQLite or PostgreSQL) that serves the page on a free loopback port, and a small
HTTP client that keeps cookies the way a browser does."""

from __future__ import annotations

import http.client
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from sync.desk import SHARE_GROUP, Desk
from sync.desk_service.db import DeskDB
from sync.desk_service.operators import Operators, Role
from sync.desk_service.web import DeskWeb
from tests.sync.conftest import wait_for
from tests.sync.terminal import LiveTerminal, live_terminal, mqtt_config, terminal_public_key

PASSWORDS = {"op1": "operator-pass-1", "view1": "viewer-pass-1", "adm1": "admin-pass-1"}
ROLES = {"op1": Role.OPERATOR, "view1": Role.VIEWER, "adm1": Role.ADMIN}
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
PRE_RE = re.compile(r'name="pre" value="([^"]+)"')


def add_operators(store: DeskDB) -> None:
    ops = Operators(store.engine)
    for login, password in PASSWORDS.items():
        ops.add(login, password, ROLES[login])


@dataclass
class DeskPage:
    store: DeskDB
    web: DeskWeb
    desk: Desk | None = None
    term: LiveTerminal | None = None
    tid: str = ""

    def stop(self) -> None:
        self.web.stop()
        if self.desk is not None:
            self.desk.stop()
        else:
            self.store.close()
        if self.term is not None:
            self.term.stop()


def page_only(db: str | Path) -> DeskPage:
    """The page on a desk database, without a broker (refusals happen before a send)."""
    store = DeskDB(db)
    add_operators(store)
    return DeskPage(store, DeskWeb(store).start("127.0.0.1", 0))


def page_with_terminal(tmp: Path, db: str | Path, broker: Any, desk_key: Any,
                       command_wait_s: float = 15.0) -> DeskPage:
    """A terminal online, a desk worker storing what it sends, the page on that worker."""
    tid = "W" + uuid.uuid4().hex[:8].upper()
    term = live_terminal(tmp / "t", tid, mqtt_config(broker.port, desk_key))
    return page_for(term, db, broker, desk_key, command_wait_s)


def page_for(term: LiveTerminal, db: str | Path, broker: Any, desk_key: Any,
             command_wait_s: float = 15.0) -> DeskPage:
    """A desk worker for this terminal (online on `broker`) and the page on that worker."""
    tid = term.config.terminal.id
    store = DeskDB(db)
    add_operators(store)
    desk = Desk("127.0.0.1", broker.port, desk_key.key, desk_key.kid,
                {tid: terminal_public_key(term.config)}, store, client_id=f"desk-{tid}",
                persistent=False, share_group=f"{SHARE_GROUP}-{tid}").start()
    wait_for(lambda: desk.states.get(tid, {}).get("state") == "online", 15, "online")
    web = DeskWeb(store, desk, command_wait_s=command_wait_s).start("127.0.0.1", 0)
    return DeskPage(store, web, desk, term, tid)


@dataclass
class Client:
    """Cookies, forms and redirects as a browser handles them (no JavaScript)."""

    port: int
    cookies: dict[str, str] = field(default_factory=dict)
    origin: str | None = None  # sent on POST, as browsers do

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = self.connection()
        h = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
            if self.origin:
                h.setdefault("Origin", self.origin)
        conn.request(method, path, body=body, headers=h)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8")
        for raw in resp.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie(raw)
            for k, m in jar.items():
                if m["max-age"] == "0":
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = m.value
        conn.close()
        return resp.status, dict(resp.headers.items()), text

    def get(self, path: str) -> tuple[int, str]:
        status, headers, text = self.request("GET", path)
        if status == 303:
            return self.get(headers["Location"])
        return status, text

    def post(self, path: str, form: dict[str, str], follow: bool = True,
             headers: dict[str, str] | None = None) -> tuple[int, str]:
        status, h, text = self.request("POST", path, form, headers)
        if status == 303 and follow:
            return self.get(h["Location"])
        return status, text

    def login(self, login: str, password: str | None = None) -> tuple[int, str]:
        _, page = self.get("/login")
        pre = PRE_RE.search(page)
        assert pre, page
        return self.post("/login", {"pre": pre.group(1), "login": login,
                                    "password": PASSWORDS.get(login, "") if password is None
                                    else password})

    def csrf(self, path: str = "/") -> str:
        _, page = self.get(path)
        m = CSRF_RE.search(page)
        assert m, page
        return m.group(1)
