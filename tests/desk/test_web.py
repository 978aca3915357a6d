"""The operator's page without a browser: logins (lockout that survives a restart, the
per-address throttle), CSRF, roles and the audit trail on SQLite; and, over PostgreSQL,
a real terminal's payment found by a phone as a customer reads it and re-processed from
the page until the terminal's ledger holds the new account."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from sync.cli import desk_main
from sync.desk import Desk
from sync.desk_service import operators as ops_mod
from sync.desk_service.db import CommitStats, DeskDB
from sync.desk_service.operators import LoginResult, Operators, Role
from sync.desk_service.web import DeskWeb
from sync.keys import load_signing_key, public_b64
from tests.desk.web import PASSWORDS, Client, add_operators, page_only, page_with_terminal
from tests.sync.broker import free_port
from tests.sync.conftest import wait_for
from tests.sync.terminal import live_terminal, mqtt_config


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
    status, _, _ = c.request("POST", "/action/status", {"csrf": "x" * 70000})
    assert status == 413


def test_a_page_with_no_broker_says_the_action_was_not_sent(tmp_path):
    store = DeskDB(tmp_path / "d.sqlite")
    add_operators(store)
    web = DeskWeb(store).start("127.0.0.1", 0)
    try:
        c = Client(web.port)
        c.login("op1")
        status, h, _ = c.request("POST", "/action/terminal", {"csrf": c.csrf(), "t": "T1",
                                                              "op": "enable"})
        assert status == 303 and "note=" in h["Location"]
        (row,) = _audit(store, login="op1", action="enable")
        assert row["outcome"] == "failed" and "no broker" in row["detail"]
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


def test_disable_enable_phone_and_a_status_from_the_page_reach_the_terminal(
        tmp_path, broker, desk_key):
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
        pid = term.pay(500)
        wait_for(lambda: page.store.known_payment(tid, pid) is not None, 20, "stored")
        status, text = c.post("/action/status", {
            "csrf": c.csrf(), "t": tid, "id": pid, "status": "failed",
            "detail": "счёт закрыт"})
        assert status == 200 and "Отправлено" in text, text
        wait_for(lambda: term.ledger.get_payment(pid)["status"] == "failed", 20,
                 "the status at the terminal")
        assert term.engine.payment_status(pid)["status"] == "failed"
        assert "Статус отправлен на терминал" in c.get(f"/payment?t={tid}&id={pid}")[1]
        acts = [(r["action"], r["outcome"]) for r in _audit(page.store, login="op1")
                if r["terminal_id"] == tid]
        assert acts == [("set_status", "sent"), ("set_support_phone", "executed"),
                        ("enable", "executed"), ("disable", "executed")]
    finally:
        page.stop()


def test_a_result_stored_by_another_worker_is_found_and_a_resend_waits_for_its_own(
        tmp_path, broker, desk_key):
    """Results come on a shared subscription: the worker that sent a command may not be
    the one that receives its answer. The other one stores it; the sender finds it in
    the database. The same command id sent again clears the old answer first (else a
    retry would read the previous send's result)."""
    db = tmp_path / "desk.sqlite"
    sender = Desk("127.0.0.1", broker.port, desk_key.key, desk_key.kid, {}, db,
                  client_id="w-send", persistent=False, share_group="g-results",
                  consume=False)
    other = DeskDB(db)
    try:
        body = sender.command_body("T9", "enable", {}, 60, cmd_id="c-one")
        sender.store.record_command(body)
        with other.transaction() as conn:  # the other worker received the answer
            other.save_result(conn, "T9", "c-one", {"cmd_id": "c-one", "ok": True}, 1)
        assert sender.wait_result("c-one", 5) == {"cmd_id": "c-one", "ok": True}
        sender.store.record_command(body)  # sent again: the stored answer is not its
        assert sender.store.command_result("c-one") is None
        assert sender.wait_result("c-one", 0.5) is None
    finally:
        sender.store.close()
        other.close()


def _desk_proc(*args: str) -> list[str]:
    """`kiosk desk …` as its own process (through sync.cli: independent of where the
    top-level command lives)."""
    return [sys.executable, "-c",
            "import sys; from sync.cli import desk_main; sys.exit(desk_main(sys.argv[1:]))",
            *args]


def test_kiosk_desk_serve_http_serves_the_page_and_its_actions(tmp_path, broker, monkeypatch):
    desk_dir = tmp_path / "desk"
    assert desk_main(["keygen", "--dir", str(desk_dir)]) == 0
    kid = (desk_dir / "desk.ed25519.kid").read_text().strip()
    pub = public_b64(load_signing_key(desk_dir / "desk.ed25519.key").public_key())
    key = SimpleNamespace(kid=kid, public_b64=pub)  # what the terminal pins
    term = live_terminal(tmp_path / "t", "TWEB1", mqtt_config(broker.port, key))
    keys = tmp_path / "terminal-keys"
    keys.mkdir()
    (keys / "TWEB1.pub").write_bytes(
        (term.config.paths.data_dir / "keys" / "terminal.ed25519.pub").read_bytes())
    db = str(desk_dir / "desk.sqlite")
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORDS["op1"] + "\n"))
    assert desk_main(["--db", db, "operator", "add", "--login", "op1", "--role",
                      "operator"]) == 0
    port = free_port()
    proc = subprocess.Popen(
        _desk_proc("--port", str(broker.port), "--key", str(desk_dir / "desk.ed25519.key"),
                   "--terminal-keys", str(keys), "--db", db, "--client-id", "serve-web",
                   "serve", "--http", f"127.0.0.1:{port}", "--health-interval", "1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        c = Client(port)

        def up() -> bool:
            try:
                return c.request("GET", "/login")[0] == 200
            except OSError:
                return False

        wait_for(up, 30, "the page answering")
        pid = term.pay(500)
        store = DeskDB(db)
        wait_for(lambda: store.known_payment("TWEB1", pid) is not None, 30, "stored")
        store.close()
        c.login("op1")
        status, text = c.get("/?q=916+123+45+67&terminal=TWEB1")
        assert status == 200 and pid in text
        status, text = c.post("/action/reprocess", {"csrf": c.csrf(), "t": "TWEB1", "id": pid,
                                                    "account": "(916) 777-77-77"})
        assert status == 200 and "Выполнено терминалом" in text, text
        assert term.ledger.get_payment(pid)["account"] == "9167777777"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        term.stop()
    assert proc.returncode == 0, err
    assert f"desk page at http://127.0.0.1:{port}/" in err


def test_an_unclaimed_credit_is_reprocessed_from_the_page_once(tmp_path, broker, desk_key):
    page = page_with_terminal(tmp_path, tmp_path / "desk.sqlite", broker, desk_key)
    try:
        term, tid = page.term, page.tid
        sid = term.ledger.open_session("mts", "9161234567", "RUB")
        term.ledger.abandon_session(sid)
        rid = term.ledger.record_stacked("froze", 50_000, "RUB", 2, False, None).unclaimed_id
        wait_for(lambda: page.store.known_payment(tid, rid) is not None, 20, "unclaimed")
        c = Client(page.web.port)
        c.login("op1")
        status, text = c.get(f"/?q={rid}")  # the number on the unclaimed-credit slip
        assert status == 200 and rid in text and "unclaimed" in text
        _, text = c.get(f"/payment?t={tid}&id={rid}")
        assert 'id="provider"' in text
        form = {"csrf": c.csrf(f"/payment?t={tid}&id={rid}"), "t": tid, "id": rid,
                "provider": "mts", "account": "916 999 99 99", "reason": "call"}
        status, text = c.post("/action/reprocess", form)
        assert status == 200 and "Выполнено терминалом" in text, text
        status, text = c.post("/action/reprocess", form)  # pressed twice
        assert status == 200 and "Уже было выполнено" in text, text
        payments = [p for p in term.ledger.list_payments(50) if p["kind"] == "payment"]
        assert len(payments) == 1 and payments[0]["account"] == "9169999999"
        assert payments[0]["inserted_minor"] == 50_000
        acts = [r["outcome"] for r in _audit(page.store, action="reprocess_unclaimed")]
        assert acts == ["again", "executed"]
    finally:
        page.stop()


def _stored_payment(store: DeskDB, terminal: str, seq: int, account: str, minor: int,
                    created_ms: int) -> str:
    """A payment record as a worker stores it from a terminal's batch."""
    pid = f"{terminal}-{seq:08d}"
    data = {"id": pid, "kind": "payment", "status": "accepted", "provider_id": "mts",
            "account": account, "inserted_minor": minor, "commission_minor": 0,
            "credited_minor": minor, "currency": "RUB", "reprocess_count": 0,
            "created_ms": created_ms}
    with store.transaction() as conn:
        store.commit_records(conn, terminal, "payment", [{"seq": seq, "ref": pid,
                                                          "data": data}],
                             CommitStats(), created_ms)
    return pid


def test_search_by_amount_terminal_and_time_and_whatever_is_typed(page):
    day = 1_800_000_000_000
    hour = 3_600_000
    a = _stored_payment(page.store, "TA", 1, "9161234567", 50_000, day)
    b = _stored_payment(page.store, "TB", 1, "9161234567", 49_950, day + 5 * hour)
    c = Client(page.web.port)
    c.login("view1")
    _, text = c.get("/?q=8+916+123+45+67")
    assert a in text and b in text and "Найдено: 2" in text
    _, text = c.get("/?amount=499,50")
    assert b in text and a not in text
    _, text = c.get("/?q=4567&terminal=TA")
    assert a in text and b not in text
    between = day + 2 * hour
    when = dt.datetime.fromtimestamp(between / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M")
    _, text = c.get(f"/?q=916&since={when}")
    assert b in text and a not in text
    _, text = c.get(f"/?q=916&until={when}")
    assert a in text and b not in text
    for bad, says in (("/?amount=abc", "not an amount"),
                      ("/?since=yesterday", "is not a time"),
                      ("/?q=%27+OR+1%3D1+--", "at least 3 digits")):
        status, text = c.get(bad)
        assert status == 400 and says in text, bad
    _, text = c.get("/?q=nothing-like-this")
    assert "Ничего не найдено" in text


@pytest.mark.parametrize(("typed", "previous", "sent"), [
    ("8 916 999-99-99", "9161234567", "9169999999"),  # read out with the trunk 8
    ("+7 (916) 999-99-99", "9161234567", "9169999999"),
    ("+7 916 999 99 99", None, "9169999999"),  # an unclaimed credit: "+" says phone
    ("916 999-99-99", "9161234567", "9169999999"),
    ("8 000 123 45 67", "80001234567", "80001234567"),  # an 11-digit account stays
    ("81234567890", None, "81234567890"),  # no account to compare, no "+": as typed
])
def test_a_corrected_account_read_out_with_its_prefix_is_the_terminals_number(
        typed, previous, sent):
    """Found by the stories: the operator typed the phone as the customer read it
    ("8 916 …") and the terminal refused 89169999999 as not an mts account."""
    from sync.desk_service.search import corrected_account

    assert corrected_account(typed, previous) == sent


@pytest.mark.parametrize("typed", ["", "+", "916 abc", "++7 916 999 99 99", "7+916"])
def test_a_corrected_account_that_is_not_a_number_is_refused(typed):
    from sync.desk_service.search import corrected_account

    assert corrected_account(typed, "9161234567") is None
