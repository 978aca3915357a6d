"""The operator's page without a browser: logins (lockout that survives a restart, the
per-address throttle), CSRF, roles and the audit trail on SQLite; and, over PostgreSQL,
a real terminal's payment found by a phone as a customer reads it and re-processed from
the page until the terminal's ledger holds the new account."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from sync.cli import desk_main
from sync.desk_service import operators as ops_mod
from sync.desk_service.db import DeskDB
from sync.desk_service.operators import LoginResult, Operators, Role
from sync.desk_service.web import DeskWeb
from tests.desk.web import PASSWORDS, Client, page_only, page_with_terminal
from tests.sync.conftest import wait_for


@pytest.fixture
def page(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = page_only(tmp_path / "desk.sqlite")
    yield p
    p.stop()


def _audit(store: DeskDB, **where: str) -> list[dict]:
    rows = Operators(store.engine).audit_rows()
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def test_a_login_is_locked_after_repeated_failures_and_a_restart_does_not_lift_it(tmp_path):
    db = tmp_path / "desk.sqlite"
    clock = [1_800_000_000_000]
    store = DeskDB(db)
    ops = Operators(store.engine, clock=lambda: clock[0])
    ops.add("op1", PASSWORDS["op1"], Role.OPERATOR)
    for _ in range(ops_mod.MAX_FAILURES):
        assert ops.login("op1", "wrong-password", "10.0.0.1")[0] is LoginResult.BAD
    # the right password now is refused too: the account is locked for a while
    assert ops.login("op1", PASSWORDS["op1"], "10.0.0.2")[0] is LoginResult.LOCKED_OUT
    store.close()
    restarted = DeskDB(db)  # a new process on the same database
    ops = Operators(restarted.engine, clock=lambda: clock[0])
    assert ops.login("op1", PASSWORDS["op1"], "10.0.0.2")[0] is LoginResult.LOCKED_OUT
    clock[0] += ops_mod.LOCKOUT_MS + 1
    result, token = ops.login("op1", PASSWORDS["op1"], "10.0.0.2")
    assert result is LoginResult.OK and token and ops.session(token).role is Role.OPERATOR
    refused = _audit(restarted, action="login", outcome="refused", target="op1")
    assert len(refused) == ops_mod.MAX_FAILURES + 2
    assert any("locked for" in (r["detail"] or "") for r in refused)
    assert _audit(restarted, action="login", outcome="ok", login="op1")
    restarted.close()


def test_one_address_guessing_many_logins_is_throttled(tmp_path):
    store = DeskDB(tmp_path / "desk.sqlite")
    ops = Operators(store.engine)
    ops.add("adm1", PASSWORDS["adm1"], Role.ADMIN)
    for i in range(ops_mod.MAX_CLIENT_FAILURES):
        assert ops.login(f"guess{i}", "x", "10.9.9.9")[0] is LoginResult.BAD
    assert ops.login("adm1", PASSWORDS["adm1"], "10.9.9.9")[0] is LoginResult.THROTTLED
    assert ops.login("adm1", PASSWORDS["adm1"], "10.1.1.1")[0] is LoginResult.OK
    store.close()


def test_logins_over_http_wrong_password_and_session_cookie(page):
    c = Client(page.web.port)
    status, text = c.login("op1", "not-the-password")
    assert status == 401 and "Неверный логин или пароль" in text
    status, headers, _ = c.request("GET", "/")
    assert status == 303 and headers["Location"] == "/login"
    _, page_html = c.get("/login")
    pre = re.search(r'name="pre" value="([^"]+)"', page_html).group(1)
    status, headers, _ = c.request("POST", "/login", {"pre": pre, "login": "op1",
                                                      "password": PASSWORDS["op1"]})
    assert status == 303
    cookie = next(v for k, v in headers.items() if k.lower() == "set-cookie")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    status, text = c.get("/")
    assert status == 200 and "op1 (operator)" in text
    assert _audit(page.store, action="login", outcome="refused", target="op1")


def test_every_post_needs_the_sessions_csrf_token(page):
    c = Client(page.web.port)
    c.login("op1")
    form = {"t": "T1", "id": "T1-00000001", "status": "processed"}
    status, text = c.post("/action/status", form)
    assert status == 403 and "форма устарела" in text
    status, _ = c.post("/action/status", {**form, "csrf": "forged"})
    assert status == 403
    other = Client(page.web.port)  # another operator's token does not fit this session
    other.login("adm1")
    status, _ = c.post("/action/status", {**form, "csrf": other.csrf()})
    assert status == 403
    # the right token from another site's page: the browser names that origin
    status, _ = c.post("/action/status", {**form, "csrf": c.csrf()},
                       headers={"Origin": "http://evil.example"})
    assert status == 403
    refused = _audit(page.store, login="op1", outcome="refused", action="set_status")
    assert len(refused) == 4 and all("CSRF" in r["detail"] for r in refused)
    assert all(r["target"] == "T1-00000001" for r in refused)
    # the login form itself: without its token, no login
    status, text = Client(page.web.port).post("/login", {"login": "op1",
                                                         "password": PASSWORDS["op1"]})
    assert status == 403
    status, _ = c.post("/logout", {"csrf": c.csrf()})
    assert status == 200 and "kd_session" not in c.cookies


def test_a_viewer_is_refused_an_action_clearly_and_the_attempt_is_audited(page):
    c = Client(page.web.port)
    c.login("view1")
    for path, form in (("/action/reprocess", {"t": "T1", "id": "T1-00000001",
                                              "account": "9169999999"}),
                       ("/action/status", {"t": "T1", "id": "T1-00000001",
                                           "status": "failed"}),
                       ("/action/terminal", {"t": "T1", "op": "disable"}),
                       ("/action/phone", {"t": "T1", "phone": "8 800 100-00-00"})):
        status, text = c.post(path, {**form, "csrf": c.csrf()})
        assert status == 403 and "Недостаточно прав" in text, path
    refused = _audit(page.store, login="view1", outcome="refused")
    assert sorted(r["action"] for r in refused) == [
        "disable", "reprocess", "set_status", "set_support_phone"]
    assert all("role viewer may not" in r["detail"] for r in refused)
    status, text = c.get("/audit")  # a viewer sees its own entries
    assert status == 200 and "role viewer may not reprocess" in text


def test_the_page_speaks_english_on_request(page):
    c = Client(page.web.port)
    c.login("adm1")
    _, text = c.get("/lang?to=en&back=/terminals")
    assert "Needs attention" in text and "Требуют внимания" not in text
    status, text = c.get("/?q=12")  # too few digits: said, not a crash
    assert status == 400 and "at least 3 digits" in text


def test_operator_add_reads_the_password_from_stdin(tmp_path, monkeypatch, capsys):
    db = str(tmp_path / "desk.sqlite")
    monkeypatch.setattr("sys.stdin", io.StringIO("a-long-password\n"))
    assert desk_main(["--db", db, "operator", "add", "--login", "anna",
                      "--role", "operator"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert desk_main(["--db", db, "operator", "add", "--login", "boris"]) == 1
    assert "at least 8 characters" in capsys.readouterr().err
    assert desk_main(["--db", db, "operator", "lock", "--login", "anna"]) == 0
    store = DeskDB(db)
    ops = Operators(store.engine)
    assert ops.login("anna", "a-long-password", "x")[0] is LoginResult.LOCKED
    assert ops.get("anna")["password_hash"].startswith("scrypt$")
    store.close()
    assert desk_main(["--db", db, "operator", "unlock", "--login", "anna"]) == 0
    assert desk_main(["--db", db, "operator", "list"]) == 0
    assert "anna operator ok" in capsys.readouterr().out


def test_on_postgresql_a_phone_finds_the_payment_and_a_reprocess_reaches_the_terminal(
        tmp_path, pg, broker, desk_key):
    page = page_with_terminal(tmp_path, pg.new_database(), broker, desk_key)
    try:
        pid = page.term.pay(500)
        wait_for(lambda: page.store.known_payment(page.tid, pid) is not None, 20, "stored")
        c = Client(page.web.port)
        c.login("op1")
        status, text = c.get("/?q=%2B7+(916)+123-45-67")
        assert status == 200 and pid in text
        status, text = c.get(f"/payment?t={page.tid}&id={pid}")
        assert status == 200 and "Запись получена от терминала" in text
        status, text = c.post("/action/reprocess", {
            "csrf": c.csrf(), "t": page.tid, "id": pid, "account": "916 999-99-99",
            "reason": "typo"})
        assert status == 200 and "Выполнено терминалом" in text, text
        p = page.term.ledger.get_payment(pid)
        assert p["account"] == "9169999999" and p["reprocess_count"] == 1
        done = _audit(page.store, login="op1", action="reprocess", outcome="executed")
        assert done and done[0]["target"] == pid and done[0]["terminal_id"] == page.tid
        wait_for(lambda: page.store.known_payment(page.tid, pid) == 1, 20, "re-processed")
        _, text = c.get(f"/payment?t={page.tid}&id={pid}")
        assert "9169999999" in text and "reprocess: executed" in text
    finally:
        page.stop()


def test_web_refuses_an_oversized_form(page):
    c = Client(page.web.port)
    c.login("op1")
    status, _, _ = c.request("POST", "/action/status", {"csrf": "x" * 20000})
    assert status == 413


def test_a_page_with_no_broker_says_the_action_was_not_sent(tmp_path):
    store = DeskDB(tmp_path / "d.sqlite")
    from tests.desk.web import add_operators

    add_operators(store)
    web = DeskWeb(store).start("127.0.0.1", 0)
    try:
        c = Client(web.port)
        c.login("op1")
        status, text = c.post("/action/terminal", {"csrf": c.csrf(), "t": "T1",
                                                   "op": "enable"})
        assert status == 404 or "Не доставлено" in text
    finally:
        web.stop()
        store.close()


def test_a_second_login_page_does_not_spoil_the_first_form(page):
    """The browser fetches /favicon.ico (and operators open tabs): the login form already
    shown must still be accepted (a new token each time made every login fail)."""
    c = Client(page.web.port)
    _, first = c.get("/login")
    pre = re.search(r'name="pre" value="([^"]+)"', first).group(1)
    c.get("/login")
    assert c.request("GET", "/favicon.ico")[0] == 404
    status, text = c.post("/login", {"pre": pre, "login": "op1", "password": PASSWORDS["op1"]})
    assert status == 200 and "op1 (operator)" in text
    # a browser posting the page's own form with Referrer-Policy no-referrer says
    # "Origin: null": the page must not make it do that, and refuses it
    status, _ = c.post("/logout", {"csrf": c.csrf()}, headers={"Origin": "null"})
    assert status == 403
    _, headers, _ = c.request("GET", "/")
    assert headers["Referrer-Policy"] == "same-origin"


def test_disable_enable_and_phone_from_the_page_reach_the_terminal(tmp_path, broker, desk_key):
    page = page_with_terminal(tmp_path, tmp_path / "desk.sqlite", broker, desk_key)
    try:
        term, tid = page.term, page.tid
        c = Client(page.web.port)
        c.login("op1")
        wait_for(lambda: page.store.terminals() and page.store.terminals()[0]["health"], 20,
                 "health at the desk")
        _, text = c.get("/terminals?attention=1")
        assert tid not in text
        status, text = c.post("/action/terminal", {"csrf": c.csrf(), "t": tid, "op": "disable",
                                                   "reason": "инкассация"})
        assert status == 200 and "Выполнено терминалом" in text, text
        wait_for(lambda: term.engine.screen.value == "out_of_service", 10, "out of service")

        def listed() -> bool:
            return tid in c.get("/terminals?attention=1")[1]

        wait_for(listed, 20, "the terminal among those needing attention")
        _, text = c.get("/terminals?attention=1")
        assert "не работает" in text and "инкассация" in text
        status, text = c.post("/action/terminal", {"csrf": c.csrf(), "t": tid, "op": "enable"})
        assert status == 200 and "Выполнено терминалом" in text
        wait_for(lambda: not listed(), 20, "back in service")
        status, text = c.post("/action/phone", {"csrf": c.csrf(), "t": tid,
                                                "phone": "8 800 555-35-35"})
        assert status == 200 and "Выполнено терминалом" in text
        assert term.engine.support_phone == "8 800 555-35-35"
        acts = [(r["action"], r["outcome"]) for r in _audit(page.store, login="op1")
                if r["terminal_id"] == tid]
        assert acts == [("set_support_phone", "executed"), ("enable", "executed"),
                        ("disable", "executed")]
    finally:
        page.stop()
