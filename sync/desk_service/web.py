"""The operator's page: server-rendered HTML on the standard library's ThreadingHTTPServer.

Served by a desk worker (`kiosk desk serve --http 127.0.0.1:8080`): it shares the
worker's database and its MQTT connection, so an action (re-process, a status, disable,
a support phone) goes to the terminal through the same signed command path as
`kiosk desk cmd` (sync/desk_service/actions.py). Sessions, throttling and the audit trail
are in the database, so any worker serving the page answers for any session.

No JavaScript, nothing loaded from elsewhere: plain forms. Russian first, English by a
switch (a cookie). Every POST carries a CSRF token checked here; a form posted from
another origin is refused. Plain HTTP on loopback: production puts a TLS-terminating
reverse proxy in front (docs/desk.md) and sets `secure_cookies`.
"""

from __future__ import annotations

import html
import json
import logging
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import select

from kiosk.receipts import format_money
from sync import topics
from sync.commands import valid_phone
from sync.desk_service import actions
from sync.desk_service import schema as s
from sync.desk_service.operators import (
    LoginResult,
    Operators,
    Role,
    Session,
    csrf_ok,
)
from sync.desk_service.search import (
    LIKE_ESCAPE,
    Query,
    corrected_account,
    find_payments,
    like_escape,
    normalise_digits,
    parse_amount,
)
from sync.help_desk import describe_help, help_metrics, help_view, terminal_of

log = logging.getLogger("sync.desk.web")

SESSION_COOKIE = "kd_session"
PRE_COOKIE = "kd_pre"  # the login form's CSRF token (no session yet)
LANG_COOKIE = "kd_lang"
LANGS = ("ru", "en")
PRE_LEN = 32  # characters of the login form's token (token_urlsafe(24))
MAX_BODY = 64 * 1024  # a form is small; two help texts of 4000 Cyrillic letters are
# 48 KB once percent-encoded (6 bytes a letter)
COMMAND_TTL_S = 300.0
COMMAND_WAIT_S = 15.0
QUEUE_ATTENTION = 20  # unsent payments on a terminal that need a look
HEALTH_STALE_MS = 15 * 60 * 1000  # no health for this long: the terminal is silent
STATUSES = ("processed", "failed")
FLEET = "*"  # the form's value for "every terminal the desk knows"
FLEET_PHONE = "set_fleet_phone"  # audit action names
PUSH_HELP = "push_help_text"
HELP_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
HELP_TEXT_MAX = 4000  # sync/desk_config.py refuses a longer text
RESULT_WORD = {True: "ok", False: "refused", None: "…"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # not no-referrer: with it a browser sends "Origin: null" on the page's own forms
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# every text a person reads: (Russian, English)
M: dict[str, tuple[str, str]] = {
    "title": ("Служба поддержки", "Support desk"),
    "login": ("Вход", "Log in"),
    "user": ("Логин", "Login"),
    "password": ("Пароль", "Password"),
    "logout": ("Выйти", "Log out"),
    "search": ("Поиск платежа", "Find a payment"),
    "terminals": ("Терминалы", "Terminals"),
    "audit": ("Журнал действий", "Audit trail"),
    "help_code": ("Код помощи", "Help code"),
    "help_none": ("Нет открытой помощи с этим кодом (сессия клиента закончилась или "
                  "терминал ещё не прислал состояние)",
                  "No open help with this code (the customer's session ended, or the "
                  "terminal's health has not arrived)"),
    "help_stats": ("Самообслуживание", "Self-service"),
    "q": ("Номер платежа, счёт или телефон", "Payment id, account or phone"),
    "terminal": ("Терминал", "Terminal"),
    "amount": ("Сумма, ₽", "Amount, RUB"),
    "since": ("С (UTC или 2h, 3d)", "Since (UTC or 2h, 3d)"),
    "until": ("По (UTC)", "Until (UTC)"),
    "find": ("Найти", "Find"),
    "found": ("Найдено", "Found"),
    "none_found": ("Ничего не найдено", "Nothing found"),
    "time": ("Время (UTC)", "Time (UTC)"),
    "payment": ("Платёж", "Payment"),
    "kind": ("Вид", "Kind"),
    "status": ("Статус", "Status"),
    "sum": ("Сумма", "Amount"),
    "provider": ("Получатель", "Provider"),
    "account": ("Счёт", "Account"),
    # The receipt's check code: a caller who reads it out holds the receipt.
    "check_code": ("Код проверки (с чека)", "Check code (on the receipt)"),
    "timeline": ("История платежа", "Payment timeline"),
    "what": ("Что", "What"),
    "who": ("Кто", "Who"),
    "details": ("Подробности", "Details"),
    "ev_record": ("Запись получена от терминала", "Record received from the terminal"),
    "ev_status": ("Статус отправлен на терминал", "Status sent to the terminal"),
    "ev_command": ("Команда отправлена", "Command sent"),
    "ev_result": ("Ответ терминала", "Terminal's answer"),
    "ev_event": ("Событие терминала", "Terminal event"),
    "ev_audit": ("Действие оператора", "Operator action"),
    "reprocess": ("Перепровести на исправленный счёт", "Re-process to a corrected account"),
    "new_account": ("Новый счёт (цифры)", "New account (digits)"),
    "reason": ("Причина", "Reason"),
    "do_reprocess": ("Перепровести", "Re-process"),
    "set_status": ("Установить статус", "Set the status"),
    "detail": ("Пояснение", "Detail"),
    "do_status": ("Отправить статус", "Send the status"),
    "processed": ("проведён", "processed"),
    "failed": ("не проведён", "failed"),
    "state": ("Связь", "Link"),
    "online": ("на связи", "online"),
    "offline": ("нет связи", "offline"),
    "service": ("Работа", "Service"),
    "in_service": ("работает", "in service"),
    "oos": ("не работает", "out of service"),
    "paper": ("Бумага", "Paper"),
    "cassette": ("Кассета", "Cassette"),
    "queue": ("Не отправлено", "Unsent"),
    "last_payment": ("Последний платёж", "Last payment"),
    "attention": ("Требуют внимания", "Needs attention"),
    "all": ("Все", "All"),
    "why": ("Почему", "Why"),
    "disable": ("Вывести из работы", "Take out of service"),
    "enable": ("Вернуть в работу", "Put back in service"),
    "support_phone": ("Телефон поддержки", "Support phone"),
    "do_phone": ("Сменить телефон", "Change the phone"),
    "result": ("Результат", "Result"),
    "k_executed": ("Выполнено терминалом", "Executed by the terminal"),
    "k_again": ("Уже было выполнено, повторно не выполнялось",
                "Executed before, not run again"),
    "k_refused": ("Отклонено", "Refused"),
    "k_queued": ("Терминал не на связи: команда ждёт его у брокера",
                 "Terminal away: the command waits for it at the broker"),
    "k_not_delivered": ("Не доставлено", "Not delivered"),
    "k_sent": ("Отправлено", "Sent"),
    "k_failed": ("Ошибка", "Failed"),
    "bad_credentials": ("Неверный логин или пароль", "Wrong login or password"),
    "locked": ("Учётная запись заблокирована администратором",
               "The account is locked by an administrator"),
    "locked_out": ("Слишком много неверных паролей: учётная запись временно заблокирована",
                   "Too many wrong passwords: the account is locked for a while"),
    "throttled": ("Слишком много неудачных попыток с этого адреса: подождите",
                  "Too many failed attempts from this address: wait"),
    "forbidden_role": ("Недостаточно прав: действие доступно ролям «оператор» и «администратор»",
                       "Not allowed: this action needs the role operator or admin"),
    "csrf": ("Запрос отклонён: форма устарела или отправлена не с этой страницы. "
             "Откройте страницу заново.",
             "Request refused: the form is stale or was not sent from this page. "
             "Open the page again."),
    "not_found": ("Не найдено", "Not found"),
    "no_payment": ("Такого платежа нет в базе службы", "The desk holds no such payment"),
    "no_broker": ("Нет связи с брокером: действие не отправлено",
                  "No broker connection: the action was not sent"),
    "bad_input": ("Неверный ввод", "Bad input"),
    "role": ("Роль", "Role"),
    "reprocessed_n": ("перепроведений", "re-processes"),
    "open": ("Открыть", "Open"),
    "commands": ("Команды", "Commands"),
    "health": ("Состояние", "Health"),
    "silent": ("нет данных о состоянии", "no health report"),
    "ledger_failed": ("сбой журнала", "ledger failure"),
    "lang": ("English", "Русский"),
    "forbidden_admin": ("Недостаточно прав: действие доступно только роли «администратор»",
                        "Not allowed: this action needs the role admin"),
    "fleet_phone": ("Телефон поддержки для всего парка", "Support phone for the whole fleet"),
    "do_fleet_phone": ("Сменить на всех терминалах", "Change on every terminal"),
    "help_text": ("Справочный текст", "Help text"),
    "help_key": ("Ключ (латиница, например how_to_pay)", "Key (e.g. how_to_pay)"),
    "help_ru": ("Текст по-русски", "Russian text"),
    "help_en": ("Текст по-английски", "English text"),
    "to_whom": ("Кому", "To"),
    "fleet": ("Весь парк", "The whole fleet"),
    "do_help": ("Отправить текст", "Push the text"),
    "fleet_result": ("Результат по терминалам", "Result per terminal"),
    "admin_actions": ("Действия администратора", "Admin actions"),
}


def ms_text(ms: int | None) -> str:
    if not ms:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def money(minor: int | None, currency: str | None = "RUB") -> str:
    return "—" if minor is None else format_money(minor, currency or "RUB")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def phone_ok(phone: str) -> bool:
    """A support phone as the terminal will take it (sync.commands.valid_phone) and as a
    customer can dial it: digits with the usual separators, at most 32 characters."""
    return normalise_digits(phone) is not None and valid_phone(phone)


@dataclass
class Reply:
    status: int
    body: str = ""
    headers: dict[str, str] | None = None
    cookies: list[str] | None = None


class DeskWeb:
    """The page's application: routes a request to a handler, renders HTML."""

    def __init__(self, store: Any, desk: Any | None = None, *, secure_cookies: bool = False,
                 trust_proxy: bool = False, command_wait_s: float = COMMAND_WAIT_S,
                 clock: Callable[[], int] | None = None) -> None:
        self.store = store  # DeskDB
        self.desk = desk  # sync.desk.Desk (None: read-only, actions are refused)
        self.ops = Operators(store.engine, clock) if clock else Operators(store.engine)
        self.secure_cookies = secure_cookies
        self.trust_proxy = trust_proxy
        self.command_wait_s = command_wait_s
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- server ------------------------------------------------------------------------
    def start(self, host: str, port: int) -> DeskWeb:
        app = self

        class Handler(_Handler):
            pass

        Handler.app = app
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="desk-web",
                                        daemon=True)
        self._thread.start()
        log.info("desk page at http://%s:%d/", host, self.port)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        assert self.server is not None
        host = self.server.server_address[0]
        return f"http://{host if isinstance(host, str) else host.decode()}:{self.port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- helpers -----------------------------------------------------------------------
    def cookie(self, name: str, value: str, max_age: int | None = None,
               http_only: bool = True) -> str:
        parts = [f"{name}={value}", "Path=/", "SameSite=Strict"]
        if http_only:
            parts.append("HttpOnly")
        if self.secure_cookies:
            parts.append("Secure")
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        return "; ".join(parts)

    # -- dispatch ----------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        path = req.path
        if req.method == "GET" and path == "/lang":
            to = req.query.get("to", "ru")
            back = req.query.get("back", "/")
            if not back.startswith("/") or back.startswith("//"):
                back = "/"
            return Reply(HTTPStatus.SEE_OTHER, headers={"Location": back},
                         cookies=[self.cookie(LANG_COOKIE, to if to in LANGS else "ru",
                                              365 * 86400)])
        if path == "/favicon.ico":
            return Reply(HTTPStatus.NOT_FOUND)
        if path == "/login":
            return self.login_get(req) if req.method == "GET" else self.login_post(req)
        session = self.ops.session(req.cookies.get(SESSION_COOKIE))
        if session is None:
            if req.method == "POST":
                self.ops.audit(None, req.client, self.action_name(req), "refused",
                               req.form.get("t"), req.form.get("id") or req.form.get("t"),
                               "not logged in (or the session expired)")
            return Reply(HTTPStatus.SEE_OTHER, headers={"Location": "/login"})
        req.session = session
        if req.method == "POST":
            if not self.post_allowed(req, session):
                self.ops.audit(session.login, req.client, self.action_name(req), "refused",
                               req.form.get("t"), req.form.get("id") or req.form.get("t"),
                               "CSRF token missing or wrong, or another origin")
                return self.page(req, self.t(req, "bad_input"), self.error_box(req, "csrf"),
                                 HTTPStatus.FORBIDDEN)
            routes: dict[str, Callable[[Request], Reply]] = {
                "/logout": self.logout, "/action/reprocess": self.do_reprocess,
                "/action/status": self.do_status, "/action/terminal": self.do_terminal,
                "/action/phone": self.do_phone, "/action/fleet_phone": self.do_fleet_phone,
                "/action/help_text": self.do_help_text}
        else:
            routes = {"/": self.search, "/payment": self.payment, "/terminals": self.terminals,
                      "/terminal": self.terminal, "/audit": self.audit, "/help": self.help}
        handler = routes.get(path)
        if handler is None:
            return self.page(req, self.t(req, "not_found"),
                             f"<p>{esc(self.t(req, 'not_found'))}</p>", HTTPStatus.NOT_FOUND)
        return handler(req)

    @staticmethod
    def action_name(req: Request) -> str:
        """The audit's name for what a POST asked."""
        names = {"/action/reprocess": "reprocess", "/action/status": "set_status",
                 "/action/phone": "set_support_phone", "/logout": "logout",
                 "/action/fleet_phone": FLEET_PHONE, "/action/help_text": PUSH_HELP}
        if req.path == "/action/terminal":
            return req.form.get("op", "")[:16] or "terminal"
        return names.get(req.path, req.path[:64])

    def post_allowed(self, req: Request, session: Session) -> bool:
        return csrf_ok(session.csrf, req.form.get("csrf")) and req.same_origin()

    # -- language and page frame -------------------------------------------------------
    def t(self, req: Request, key: str) -> str:
        ru, en = M[key]
        return en if req.lang == "en" else ru

    def page(self, req: Request, title: str, body: str,
             status: int = HTTPStatus.OK) -> Reply:
        sess = req.session
        nav = ""
        if sess is not None:
            nav = (f'<nav><a href="/">{esc(self.t(req, "search"))}</a> '
                   f'<a href="/terminals">{esc(self.t(req, "terminals"))}</a> '
                   f'<a href="/terminals?attention=1">{esc(self.t(req, "attention"))}</a> '
                   f'<a href="/audit">{esc(self.t(req, "audit"))}</a> '
                   f'<a href="/help">{esc(self.t(req, "help_code"))}</a> '
                   f'<span class="who" id="who">{esc(sess.login)} ({esc(sess.role.label)})</span> '
                   f'<form method="post" action="/logout" class="inline">{self.csrf_field(req)}'
                   f'<button type="submit" id="logout">{esc(self.t(req, "logout"))}</button>'
                   "</form></nav>")
        other = "en" if req.lang == "ru" else "ru"
        back = urllib.parse.quote(req.raw_path if req.method == "GET" else "/", safe="")
        switch = (f'<a class="lang" href="/lang?to={other}&amp;back={back}">'
                  f'{esc(self.t(req, "lang"))}</a>')
        doc = (f'<!DOCTYPE html><html lang="{req.lang}"><head><meta charset="utf-8">'
               f"<title>{esc(title)} — {esc(self.t(req, 'title'))}</title>"
               f"<style>{CSS}</style></head><body><header><b>{esc(self.t(req, 'title'))}</b> "
               f"{nav} {switch}</header><main><h1>{esc(title)}</h1>{body}</main></body></html>")
        return Reply(status, doc)

    def csrf_field(self, req: Request) -> str:
        assert req.session is not None
        return f'<input type="hidden" name="csrf" value="{esc(req.session.csrf)}">'

    def error_box(self, req: Request, key: str, extra: str = "") -> str:
        more = f" {esc(extra)}" if extra else ""
        return f'<p class="error" id="error">{esc(self.t(req, key))}{more}</p>'

    # -- login -------------------------------------------------------------------------
    def login_get(self, req: Request, error: str | None = None,
                  status: int = HTTPStatus.OK) -> Reply:
        # one token per browser until it logs in (a second tab, or the favicon's
        # redirect here, must not invalidate the form already open)
        pre = req.cookies.get(PRE_COOKIE, "")
        if not (PRE_LEN <= len(pre) <= 64 and pre.replace("-", "").replace("_", "").isalnum()):
            pre = secrets.token_urlsafe(24)
        box = self.error_box(req, error) if error else ""
        body = (f'{box}<form method="post" action="/login" class="login">'
                f'<input type="hidden" name="pre" value="{pre}">'
                f'<label>{esc(self.t(req, "user"))} <input name="login" id="login" '
                'autocomplete="username" required></label>'
                f'<label>{esc(self.t(req, "password"))} <input type="password" name="password" '
                'id="password" autocomplete="current-password" required></label>'
                f'<button type="submit" id="submit">{esc(self.t(req, "login"))}</button></form>')
        reply = self.page(req, self.t(req, "login"), body, status)
        reply.cookies = [self.cookie(PRE_COOKIE, pre)]
        return reply

    def login_post(self, req: Request) -> Reply:
        if not (csrf_ok(req.cookies.get(PRE_COOKIE, ""), req.form.get("pre"))
                and req.same_origin()):
            self.ops.audit(None, req.client, "login", "refused", None,
                           req.form.get("login"), "CSRF token missing or wrong")
            return self.login_get(req, "csrf", HTTPStatus.FORBIDDEN)
        result, token = self.ops.login(req.form.get("login", ""), req.form.get("password", ""),
                                       req.client)
        if result is not LoginResult.OK or token is None:
            code = (HTTPStatus.TOO_MANY_REQUESTS if result is LoginResult.THROTTLED
                    else HTTPStatus.UNAUTHORIZED)
            return self.login_get(req, result.value, code)
        return Reply(HTTPStatus.SEE_OTHER, headers={"Location": "/"},
                     cookies=[self.cookie(SESSION_COOKIE, token),
                              self.cookie(PRE_COOKIE, "", 0)])

    def logout(self, req: Request) -> Reply:
        token = req.cookies.get(SESSION_COOKIE, "")
        assert req.session is not None
        self.ops.logout(token)
        self.ops.audit(req.session.login, req.client, "logout", "ok")
        return Reply(HTTPStatus.SEE_OTHER, headers={"Location": "/login"},
                     cookies=[self.cookie(SESSION_COOKIE, "", 0)])

    # -- search ------------------------------------------------------------------------
    def search(self, req: Request) -> Reply:
        from sync.desk_service.search import parse_when

        f = req.query
        fields = [("q", "q", 28), ("terminal", "terminal", 10), ("amount", "amount", 8),
                  ("since", "since", 14), ("until", "until", 14)]
        form = '<form method="get" action="/" class="search">' + "".join(
            f'<label>{esc(self.t(req, label))} <input name="{name}" id="{name}" size="{size}" '
            f'value="{esc(f.get(name, ""))}"></label>' for name, label, size in fields
        ) + f'<button type="submit" id="find">{esc(self.t(req, "find"))}</button></form>'
        if not any(f.get(n, "").strip() for n, _, _ in fields):
            return self.page(req, self.t(req, "search"), form)
        try:
            q = Query(text=f.get("q", ""), terminal_id=f.get("terminal", "").strip() or None,
                      amount_minor=parse_amount(f["amount"]) if f.get("amount", "").strip()
                      else None,
                      since_ms=parse_when(f["since"]) if f.get("since", "").strip() else None,
                      until_ms=parse_when(f["until"]) if f.get("until", "").strip() else None)
            rows = find_payments(self.store.engine, q)
        except ValueError as exc:
            return self.page(req, self.t(req, "search"),
                             form + self.error_box(req, "bad_input", str(exc)),
                             HTTPStatus.BAD_REQUEST)
        if not rows:
            return self.page(req, self.t(req, "search"),
                             form + f'<p id="count">{esc(self.t(req, "none_found"))}</p>')
        head = "".join(f"<th>{esc(self.t(req, k))}</th>" for k in (
            "time", "terminal", "payment", "kind", "status", "sum", "provider", "account"))
        body = "".join(self.payment_row(req, r) for r in rows)
        table = (f'<p id="count">{esc(self.t(req, "found"))}: {len(rows)}</p>'
                 f'<table id="results"><tr>{head}</tr>{body}</table>')
        return self.page(req, self.t(req, "search"), form + table)

    def payment_link(self, terminal: str, payment_id: str) -> str:
        q = urllib.parse.urlencode({"t": terminal, "id": payment_id})
        return f'<a href="/payment?{esc(q)}">{esc(payment_id)}</a>'

    def payment_row(self, req: Request, r: dict[str, Any]) -> str:
        amount = r["credited_minor"] if r["kind"] == "payment" else r["inserted_minor"]
        again = (f" ({r['reprocess_count']} {esc(self.t(req, 'reprocessed_n'))})"
                 if r["reprocess_count"] else "")
        return (f"<tr><td>{ms_text(r['created_ms'])}</td><td>{esc(r['terminal_id'])}</td>"
                f"<td>{self.payment_link(r['terminal_id'], r['payment_id'])}{again}</td>"
                f"<td>{esc(r['kind'])}</td><td>{esc(r['status'])}</td>"
                f"<td>{money(amount, r['currency'])}</td><td>{esc(r['provider_id'])}</td>"
                f"<td>{esc(r['account'])}</td></tr>")

    # -- a payment's page --------------------------------------------------------------
    def payment_versions(self, terminal: str, payment_id: str) -> list[dict[str, Any]]:
        p = s.payments
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(p).where(p.c.terminal_id == terminal,
                                                p.c.payment_id == payment_id)
                                .order_by(p.c.reprocess_count)).mappings().all()
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def timeline(self, terminal: str, payment_id: str,
                 versions: list[dict[str, Any]]) -> list[tuple[int, str, str, str]]:
        """(time, what, who, details), oldest first: what the desk holds of the payment."""
        out: list[tuple[int, str, str, str]] = []
        for v in versions:
            d = v["data"]
            bills = ", ".join(f"{b.get('count', 1)}×{money(b.get('amount_minor'), None)}"
                              for b in d.get("bills") or [] if isinstance(b, dict))
            # a re-processed version is as old as its payment: show when it came
            at = v["received_ms"] if v["reprocess_count"] else d.get("created_ms")
            out.append((at or v["received_ms"], "ev_record", "terminal",
                        f"#{v['reprocess_count']} {v['status']} {v['provider_id'] or ''} "
                        f"{v['account'] or ''} {money(v['credited_minor'], v['currency'])}"
                        f"{' [' + bills + ']' if bills else ''}; received "
                        f"{ms_text(v['received_ms'])}"))
        st, c, r, a = s.statuses_sent, s.commands, s.records, s.audit
        like = f'%"{like_escape(payment_id)}"%'  # the id as a JSON string in args/data
        with self.store.engine.connect() as conn:
            for row in conn.execute(select(st).where(st.c.terminal_id == terminal,
                                                     st.c.payment_id == payment_id)).mappings():
                out.append((row["sent_ms"], "ev_status", "desk",
                            f"v{row['version']} {row['status']} {row['detail'] or ''} "
                            f"(#{row['reprocess_count']})"))
            for row in conn.execute(select(c).where(c.c.terminal_id == terminal,
                                                    c.c.args.like(like, escape=LIKE_ESCAPE))
                                    ).mappings():
                out.append((row["sent_ms"] or row["issued_ms"] or 0, "ev_command", "desk",
                            f"{row['type']} {row['args']} ({row['cmd_id']})"))
                if row["result_ms"]:
                    ok = {True: "ok", False: "refused", None: "?"}[row["ok"]]
                    out.append((row["result_ms"], "ev_result", "terminal",
                                f"{row['type']}: {ok} {row['error'] or ''}"))
            for row in conn.execute(select(r).where(r.c.terminal_id == terminal,
                                                    r.c.kind == "event",
                                                    r.c.data.like(like, escape=LIKE_ESCAPE))
                                    ).mappings():
                d = json.loads(row["data"])
                out.append((d.get("at_ms") or row["received_ms"], "ev_event", "terminal",
                            f"{d.get('kind')} {json.dumps(d.get('data'), ensure_ascii=False)}"))
            for row in conn.execute(select(a).where(a.c.target == payment_id)).mappings():
                said = "" if row["detail"] in (None, row["outcome"]) else f" ({row['detail']})"
                out.append((row["at_ms"], "ev_audit", row["login"] or "—",
                            f"{row['action']}: {row['outcome']}{said}"))
        out.sort(key=lambda e: e[0])
        return out

    def note(self, req: Request) -> str:
        """The outcome of the action this page was redirected from."""
        raw = req.query.get("note", "")
        if not raw.isdigit() or req.session is None:
            return ""
        rows = self.ops.audit_rows(audit_id=int(raw), login=req.session.login)
        if not rows:
            return ""
        row = rows[0]
        key = f"k_{row['outcome']}" if f"k_{row['outcome']}" in M else "k_failed"
        cls = "ok" if row["outcome"] in ("executed", "again", "sent") else "error"
        return (f'<p class="{cls}" id="note"><b>{esc(self.t(req, key))}</b> '
                f"({esc(row['action'])}) {esc(row['detail'] or '')}</p>")

    def payment(self, req: Request) -> Reply:
        terminal, pid = req.query.get("t", ""), req.query.get("id", "")
        versions = self.payment_versions(terminal, pid)
        if not versions:
            return self.page(req, self.t(req, "not_found"), self.error_box(req, "no_payment"),
                             HTTPStatus.NOT_FOUND)
        latest = versions[-1]
        d = latest["data"]
        facts = [("terminal", terminal), ("kind", latest["kind"]),
                 ("status", latest["status"]), ("provider", latest["provider_id"]),
                 ("account", latest["account"]),
                 ("sum", money(latest["credited_minor"] if latest["kind"] == "payment"
                               else latest["inserted_minor"], latest["currency"])),
                 ("time", ms_text(latest["created_ms"])),
                 ("check_code", d.get("check_code") or "—"),
                 ("reprocessed_n", latest["reprocess_count"])]
        summary = "".join(f"<tr><th>{esc(self.t(req, k))}</th><td id=\"f-{k}\">{esc(v)}</td></tr>"
                          for k, v in facts)
        events = self.timeline(terminal, pid, versions)
        rows = "".join(f"<tr><td>{ms_text(at)}</td><td>{esc(self.t(req, what))}</td>"
                       f"<td>{esc(who)}</td><td>{esc(det)}</td></tr>"
                       for at, what, who, det in events)
        head = "".join(f"<th>{esc(self.t(req, k))}</th>" for k in ("time", "what", "who",
                                                                    "details"))
        hidden = (f'{self.csrf_field(req)}<input type="hidden" name="t" value="{esc(terminal)}">'
                  f'<input type="hidden" name="id" value="{esc(pid)}">'
                  f'<input type="hidden" name="kind" value="{esc(latest["kind"])}">'
                  f'<input type="hidden" name="rc" value="{latest["reprocess_count"]}">')
        provider = ""
        if latest["kind"] == "unclaimed":
            provider = (f'<label>{esc(self.t(req, "provider"))} <input name="provider" '
                        f'id="provider" value="{esc(d.get("provider_id") or "")}"></label>')
        forms = (f'<section class="actions"><form method="post" action="/action/reprocess" '
                 f'id="reprocess-form"><h2>{esc(self.t(req, "reprocess"))}</h2>{hidden}'
                 f'{provider}<label>{esc(self.t(req, "new_account"))} <input name="account" '
                 f'id="new-account" required></label><label>{esc(self.t(req, "reason"))} '
                 f'<input name="reason" id="reason"></label><button type="submit" '
                 f'id="do-reprocess">{esc(self.t(req, "do_reprocess"))}</button></form>'
                 f'<form method="post" action="/action/status" id="status-form">'
                 f'<h2>{esc(self.t(req, "set_status"))}</h2>{hidden}<select name="status" '
                 f'id="status">' + "".join(
                     f'<option value="{v}">{esc(self.t(req, v))}</option>' for v in STATUSES)
                 + f'</select><label>{esc(self.t(req, "detail"))} <input name="detail" '
                 f'id="detail"></label><button type="submit" id="do-status">'
                 f'{esc(self.t(req, "do_status"))}</button></form></section>')
        body = (f'{self.note(req)}<table class="facts">{summary}</table>'
                f'<h2>{esc(self.t(req, "timeline"))}</h2>'
                f'<table id="timeline"><tr>{head}</tr>{rows}</table>{forms}')
        return self.page(req, f"{self.t(req, 'payment')} {pid}", body)

    # -- terminals ---------------------------------------------------------------------
    def terminal_view(self, row: dict[str, Any]) -> dict[str, Any]:
        """What the list shows of one terminal, and why it needs attention (if it does)."""
        try:
            health = json.loads(row["health"]) if row.get("health") else None
        except ValueError:
            health = None
        health = health if isinstance(health, dict) else {}
        why: list[str] = []
        online = row.get("state") == "online"
        if not online:
            why.append("offline")
        oos = health.get("out_of_service") or {}
        if health and not health.get("in_service", True):
            why.append("oos")
        paper = health.get("paper")
        if paper in ("out", "near_end"):
            why.append("paper")
        queue = (health.get("queue") or {}).get("payments_unsent")
        if isinstance(queue, int) and queue >= QUEUE_ATTENTION:
            why.append("queue")
        if health and not (health.get("ledger") or {}).get("ok", True):
            why.append("ledger_failed")
        received = row.get("health_received_ms")
        if not health or not received or received < int(time.time() * 1000) - HEALTH_STALE_MS:
            why.append("silent")
        return {"terminal_id": row["terminal_id"], "online": online, "health": health,
                "oos": oos, "paper": paper, "queue": queue, "why": why,
                "cassette": health.get("cassette") or {},
                "last": health.get("last_payment") or {},
                "phone": health.get("support_phone")}

    def terminals(self, req: Request) -> Reply:
        views = [self.terminal_view(r) for r in self.store.terminals()]
        attention = req.query.get("attention") == "1"
        if attention:
            views = [v for v in views if v["why"]]
        head = "".join(f"<th>{esc(self.t(req, k))}</th>" for k in (
            "terminal", "state", "service", "paper", "cassette", "queue", "last_payment",
            "why"))
        rows = []
        for v in views:
            oos = "; ".join(f"{k}: {val}" for k, val in v["oos"].items())
            service = self.t(req, "oos") + f" ({oos})" if oos else self.t(req, "in_service")
            last = v["last"]
            when = last.get("created_ms") or last.get("at_ms")
            last_text = f"{last.get('id', '')} {ms_text(when)}" if last else "—"
            cas = v["cassette"]
            why = ", ".join(self.t(req, k) if k in M else k for k in v["why"])
            q = urllib.parse.urlencode({"t": v["terminal_id"]})
            rows.append(
                f'<tr class="{"attention" if v["why"] else ""}"><td><a href="/terminal?{esc(q)}">'
                f'{esc(v["terminal_id"])}</a></td>'
                f'<td>{esc(self.t(req, "online" if v["online"] else "offline"))}</td>'
                f"<td>{esc(service)}</td><td>{esc(v['paper'] or '—')}</td>"
                f"<td>{esc(cas.get('bills', '—'))} / {money(cas.get('total_minor'))}</td>"
                f"<td>{esc(v['queue'] if v['queue'] is not None else '—')}</td>"
                f"<td>{esc(last_text)}</td><td>{esc(why)}</td></tr>")
        switch = (f'<p><a href="/terminals" id="show-all">{esc(self.t(req, "all"))}</a> · '
                  f'<a href="/terminals?attention=1" id="show-attention">'
                  f'{esc(self.t(req, "attention"))}</a></p>')
        body = (f'{switch}<table id="terminals"><tr>{head}</tr>{"".join(rows)}</table>'
                f"{self.admin_forms(req)}")
        title = self.t(req, "attention" if attention else "terminals")
        return self.page(req, title, body)

    def terminal(self, req: Request) -> Reply:
        tid = req.query.get("t", "")
        row = next((r for r in self.store.terminals() if r["terminal_id"] == tid), None)
        if row is None:
            return self.page(req, self.t(req, "not_found"), "", HTTPStatus.NOT_FOUND)
        v = self.terminal_view(row)
        hidden = f'{self.csrf_field(req)}<input type="hidden" name="t" value="{esc(tid)}">'
        cmds = self.store.commands(tid)[-20:]
        cmd_rows = "".join(
            f"<tr><td>{ms_text(c['sent_ms'] or c['result_ms'])}</td><td>{esc(c['type'])}</td>"
            f"<td>{esc(c['args'])}</td><td>{esc(RESULT_WORD[c['ok']])} "
            f"{esc(c['error'] or '')}</td></tr>" for c in reversed(cmds))
        body = (f"{self.note(req)}<p>{esc(self.t(req, 'support_phone'))}: {esc(v['phone'])}</p>"
                f'<section class="actions"><form method="post" action="/action/terminal">'
                f'{hidden}<input type="hidden" name="op" value="disable"><label>'
                f'{esc(self.t(req, "reason"))} <input name="reason" id="disable-reason"></label>'
                f'<button type="submit" id="do-disable">{esc(self.t(req, "disable"))}</button>'
                f'</form><form method="post" action="/action/terminal">{hidden}'
                f'<input type="hidden" name="op" value="enable"><button type="submit" '
                f'id="do-enable">{esc(self.t(req, "enable"))}</button></form>'
                f'<form method="post" action="/action/phone">{hidden}<label>'
                f'{esc(self.t(req, "support_phone"))} <input name="phone" id="phone" required>'
                f'</label><button type="submit" id="do-phone">{esc(self.t(req, "do_phone"))}'
                f'</button></form></section><h2>{esc(self.t(req, "commands"))}</h2>'
                f"<table>{cmd_rows}</table><h2>{esc(self.t(req, 'health'))}</h2>"
                f"<pre>{esc(json.dumps(v['health'], ensure_ascii=False, indent=1))}</pre>")
        return self.page(req, f"{self.t(req, 'terminal')} {tid}", body)

    def help(self, req: Request) -> Reply:
        """What the customer holding a help code sees now (read-only: the terminal's
        health; docs/self-service.md), and the fleet's self-service figures."""
        code = req.query.get("code", "").strip().upper()[:40]
        form = (f'<form method="get" action="/help"><label>{esc(self.t(req, "help_code"))} '
                f'<input name="code" id="help-code" value="{esc(code)}"></label>'
                f'<button type="submit" id="do-help">{esc(self.t(req, "find"))}</button></form>')
        out, status = "", HTTPStatus.OK
        if code:
            row = next((r for r in self.store.terminals()
                        if r["terminal_id"] == terminal_of(code)), None)
            view = help_view(row.get("health") if row else None, code)
            if view is None:
                out, status = f'<p id="help-none">{esc(self.t(req, "help_none"))}</p>', \
                    HTTPStatus.NOT_FOUND
            else:
                out = (f'<pre id="help-view">{esc(describe_help(view))}</pre>'
                       f"<p>{esc(ms_text(view.get('at_ms')))}</p>")
        body = form + out
        if code:  # this terminal's figures (the fleet's: kiosk desk help-stats)
            stats = help_metrics(self.store.events(terminal_of(code)))
            body += (f'<h2>{esc(self.t(req, "help_stats"))} {esc(terminal_of(code))}</h2>'
                     f'<pre id="help-stats">'
                     f'{esc(json.dumps(stats, ensure_ascii=False, indent=1))}</pre>')
        return self.page(req, self.t(req, "help_code"), body, status)

    def admin_forms(self, req: Request) -> str:
        """The fleet's support phone and help texts: admins only (others see nothing)."""
        assert req.session is not None
        if req.session.role < Role.ADMIN:
            return ""
        csrf = self.csrf_field(req)
        options = f'<option value="{FLEET}">{esc(self.t(req, "fleet"))}</option>' + "".join(
            f'<option value="{esc(r["terminal_id"])}">{esc(r["terminal_id"])}</option>'
            for r in self.store.terminals())
        return (f'<section class="actions" id="admin-actions"><h2>'
                f'{esc(self.t(req, "admin_actions"))}</h2>'
                f'<form method="post" action="/action/fleet_phone" id="fleet-phone-form">'
                f'<h2>{esc(self.t(req, "fleet_phone"))}</h2>{csrf}<label>'
                f'{esc(self.t(req, "support_phone"))} <input name="phone" id="fleet-phone" '
                f'required></label><button type="submit" id="do-fleet-phone">'
                f'{esc(self.t(req, "do_fleet_phone"))}</button></form>'
                f'<form method="post" action="/action/help_text" id="help-form">'
                f'<h2>{esc(self.t(req, "help_text"))}</h2>{csrf}<label>'
                f'{esc(self.t(req, "to_whom"))} <select name="t" id="help-target">{options}'
                f'</select></label><label>{esc(self.t(req, "help_key"))} <input name="key" '
                f'id="help-key" required></label><label>{esc(self.t(req, "help_ru"))} '
                f'<textarea name="ru" id="help-ru" required></textarea></label><label>'
                f'{esc(self.t(req, "help_en"))} <textarea name="en" id="help-en" required>'
                f'</textarea></label><button type="submit" id="do-help">'
                f'{esc(self.t(req, "do_help"))}</button></form></section>')

    # -- audit -------------------------------------------------------------------------
    def audit(self, req: Request) -> Reply:
        assert req.session is not None
        mine = req.session.role < Role.ADMIN  # others see their own entries only
        rows = self.ops.audit_rows(login=req.session.login if mine else None)
        head = "".join(f"<th>{h}</th>" for h in ("time", "login", "client", "action",
                                                 "outcome", "terminal", "target", "detail"))
        body = "".join(
            f"<tr><td>{ms_text(r['at_ms'])}</td><td>{esc(r['login'])}</td>"
            f"<td>{esc(r['client'])}</td><td>{esc(r['action'])}</td>"
            f"<td>{esc(r['outcome'])}</td><td>{esc(r['terminal_id'])}</td>"
            f"<td>{esc(r['target'])}</td><td>{esc(r['detail'])}</td></tr>" for r in rows)
        return self.page(req, self.t(req, "audit"), f'<table id="audit">{head}{body}</table>')

    # -- actions -----------------------------------------------------------------------
    def refuse_role(self, req: Request, action: str,
                    needs: Role = Role.OPERATOR) -> Reply | None:
        """A role below `needs` is refused, clearly, and the attempt is audited."""
        sess = req.session
        assert sess is not None
        if sess.role >= needs:
            return None
        self.ops.audit(sess.login, req.client, action, "refused", req.form.get("t"),
                       req.form.get("id") or req.form.get("t"),
                       f"role {sess.role.label} may not {action}")
        key = "forbidden_admin" if needs >= Role.ADMIN else "forbidden_role"
        return self.page(req, self.t(req, key), self.error_box(req, key),
                         HTTPStatus.FORBIDDEN)

    def finish(self, req: Request, action: str, terminal: str, target: str,
               outcome: actions.Outcome, back: str) -> Reply:
        audit_outcome = outcome.kind if outcome.kind in (
            "executed", "again", "refused", "queued", "sent") else "failed"
        note = self.ops.audit(req.session.login if req.session else None, req.client, action,
                              audit_outcome, terminal, target, outcome.message)
        sep = "&" if "?" in back else "?"
        return Reply(HTTPStatus.SEE_OTHER, headers={"Location": f"{back}{sep}note={note}"})

    def bad(self, req: Request, action: str, terminal: str, target: str, why: str) -> Reply:
        sess = req.session
        self.ops.audit(sess.login if sess else None, req.client, action, "refused", terminal,
                       target, why)
        return self.page(req, self.t(req, "bad_input"), self.error_box(req, "bad_input", why),
                         HTTPStatus.BAD_REQUEST)

    def no_broker(self, req: Request, action: str, terminal: str, target: str,
                  back: str) -> Reply | None:
        if self.desk is not None and self.desk.conn.connected:
            return None
        return self.finish(req, action, terminal, target, actions.Outcome(
            actions.EXIT_NO_BROKER, "not_delivered", "no broker connection: not sent"), back)

    def do_reprocess(self, req: Request) -> Reply:
        refused = self.refuse_role(req, "reprocess")
        if refused:
            return refused
        f = req.form
        terminal, pid = f.get("t", ""), f.get("id", "")
        back = "/payment?" + urllib.parse.urlencode({"t": terminal, "id": pid})
        versions = self.payment_versions(terminal, pid)
        if not versions:
            return self.bad(req, "reprocess", terminal, pid, "no such payment at the desk")
        latest = versions[-1]
        account = corrected_account(f.get("account", ""), latest["account"])
        if account is None:
            return self.bad(req, "reprocess", terminal, pid,
                            f"account {f.get('account', '')[:40]!r}: digits only")
        kind = "reprocess_unclaimed" if latest["kind"] == "unclaimed" else "reprocess"
        if kind == "reprocess":
            args: dict[str, Any] = {"payment_id": pid, "account": account,
                                    "reason": f.get("reason", "")[:200],
                                    "reprocess_count": int(latest["reprocess_count"])}
        else:
            args = {"record_id": pid, "provider_id": f.get("provider", "")[:64]
                    or (latest["provider_id"] or ""), "account": account,
                    "reason": f.get("reason", "")[:200]}
        gone = self.no_broker(req, kind, terminal, pid, back)
        if gone:
            return gone
        out = actions.run_command(self.desk, terminal, kind, args, COMMAND_TTL_S,
                                  self.command_wait_s)
        return self.finish(req, kind, terminal, pid, out, back)

    def do_status(self, req: Request) -> Reply:
        refused = self.refuse_role(req, "set_status")
        if refused:
            return refused
        f = req.form
        terminal, pid, status = f.get("t", ""), f.get("id", ""), f.get("status", "")
        back = "/payment?" + urllib.parse.urlencode({"t": terminal, "id": pid})
        if status not in STATUSES:
            return self.bad(req, "set_status", terminal, pid, f"status {status[:20]!r}")
        gone = self.no_broker(req, "set_status", terminal, pid, back)
        if gone:
            return gone
        out = actions.send_status(self.desk, terminal, pid, status,
                                  f.get("detail", "")[:200] or None)
        return self.finish(req, "set_status", terminal, pid, out, back)

    def do_terminal(self, req: Request) -> Reply:
        op = req.form.get("op", "")
        refused = self.refuse_role(req, op or "terminal")
        if refused:
            return refused
        terminal = req.form.get("t", "")
        back = "/terminal?" + urllib.parse.urlencode({"t": terminal})
        if op not in ("disable", "enable"):
            return self.bad(req, "terminal", terminal, terminal, f"op {op[:20]!r}")
        gone = self.no_broker(req, op, terminal, terminal, back)
        if gone:
            return gone
        args = {"reason": req.form.get("reason", "")[:200]} if op == "disable" else {}
        out = actions.run_command(self.desk, terminal, op, args, COMMAND_TTL_S,
                                  self.command_wait_s)
        return self.finish(req, op, terminal, terminal, out, back)

    def do_phone(self, req: Request) -> Reply:
        refused = self.refuse_role(req, "set_support_phone")
        if refused:
            return refused
        terminal, phone = req.form.get("t", ""), req.form.get("phone", "").strip()
        back = "/terminal?" + urllib.parse.urlencode({"t": terminal})
        if not phone_ok(phone):
            return self.bad(req, "set_support_phone", terminal, terminal,
                            f"phone {phone[:40]!r}")
        gone = self.no_broker(req, "set_support_phone", terminal, terminal, back)
        if gone:
            return gone
        out = actions.run_command(self.desk, terminal, "set_support_phone", {"phone": phone},
                                  COMMAND_TTL_S, self.command_wait_s)
        if out.ok:  # the next config document (a help text, …) keeps this phone
            self.store.carry_in_config(topics.topic(terminal, topics.CONFIG),
                                       {"support_phone": phone})
        return self.finish(req, "set_support_phone", terminal, terminal, out, back)

    def do_fleet_phone(self, req: Request) -> Reply:
        refused = self.refuse_role(req, FLEET_PHONE, Role.ADMIN)
        if refused:
            return refused
        phone = req.form.get("phone", "").strip()
        if not phone_ok(phone):
            return self.bad(req, FLEET_PHONE, FLEET, FLEET, f"phone {phone[:40]!r}")
        return self.config_change(req, FLEET_PHONE, FLEET, phone, {"support_phone": phone})

    def do_help_text(self, req: Request) -> Reply:
        refused = self.refuse_role(req, PUSH_HELP, Role.ADMIN)
        if refused:
            return refused
        f = req.form
        target, key = f.get("t", "").strip(), f.get("key", "").strip()
        ru, en = f.get("ru", "").strip(), f.get("en", "").strip()
        if not HELP_KEY_RE.match(key):
            return self.bad(req, PUSH_HELP, target[:32], key[:64],
                            f"key {key[:40]!r}: a-z, 0-9 and _, starting with a letter")
        if not ru or not en or max(len(ru), len(en)) > HELP_TEXT_MAX:
            return self.bad(req, PUSH_HELP, target[:32], key,
                            f"both texts (Russian and English), 1-{HELP_TEXT_MAX} characters")
        return self.config_change(req, PUSH_HELP, target, key,
                                  {"help_texts": {key: {"ru": ru, "en": en}}})

    def config_change(self, req: Request, action: str, target: str, what: str,
                      change: dict[str, Any]) -> Reply:
        """The next retained config document (the last one plus `change`) for one
        terminal or every terminal the desk knows; one audit row with the count and the
        terminals it failed for, and a result page per terminal."""
        known = [r["terminal_id"] for r in self.store.terminals()]
        terminals = known if target == FLEET else [t for t in known if t == target]
        if not terminals:
            why = "the desk knows no terminal" if target == FLEET else (
                f"terminal {target[:32]!r} is not known to the desk")
            return self.bad(req, action, target[:32], what, why)
        if self.desk is None or not self.desk.conn.connected:
            self.ops.audit(req.session.login if req.session else None, req.client, action,
                           "failed", target, what, "no broker connection: not sent")
            return self.page(req, self.t(req, "no_broker"), self.error_box(req, "no_broker"),
                             HTTPStatus.SERVICE_UNAVAILABLE)
        results = actions.publish_fleet_change(self.desk, terminals, change)
        failed = [(t, o) for t, o in results if not o.ok]
        detail = (f"{len(results)} terminal(s), {len(results) - len(failed)} sent"
                  + ("; failed for: " + ", ".join(f"{t} ({o.message})" for t, o in failed)
                     if failed else ""))
        note = self.ops.audit(req.session.login if req.session else None, req.client, action,
                              "failed" if failed else "sent", target, what, detail[:2000])
        head = "".join(f"<th>{esc(self.t(req, k))}</th>" for k in ("terminal", "result",
                                                                    "details"))
        rows = "".join(
            f'<tr class="{"ok" if o.ok else "error"}"><td>{esc(t)}</td>'
            f'<td>{esc(self.t(req, f"k_{o.kind}" if f"k_{o.kind}" in M else "k_failed"))}'
            "</td>"
            f"<td>{esc(o.message)}</td></tr>" for t, o in results)
        req.query["note"] = str(note)
        body = (f'{self.note(req)}<table id="fleet-result"><tr>{head}</tr>{rows}</table>'
                f'<p><a href="/terminals">{esc(self.t(req, "terminals"))}</a></p>')
        return self.page(req, self.t(req, "fleet_result"), body)


@dataclass
class Request:
    method: str
    raw_path: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    cookies: dict[str, str]
    client: str
    host: str | None
    origin: str | None
    session: Session | None = None

    @property
    def lang(self) -> str:
        lang = self.cookies.get(LANG_COOKIE, "ru")
        return lang if lang in LANGS else "ru"

    def same_origin(self) -> bool:
        """A form posted from another site carries its Origin: refused. (Browsers send
        Origin on every POST; its absence is left to the CSRF token.)"""
        if not self.origin:
            return True
        if self.origin == "null" or not self.host:
            return False
        return urllib.parse.urlsplit(self.origin).netloc.lower() == self.host.lower()


class _Handler(BaseHTTPRequestHandler):
    app: DeskWeb
    server_version = "kiosk-desk"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _request(self, method: str) -> Request | None:
        split = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(split.query).items()}
        form: dict[str, str] = {}
        if method == "POST":
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                return None
            raw = self.rfile.read(length).decode("utf-8", "replace")
            form = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        cookies: dict[str, str] = {}
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
            cookies = {k: m.value for k, m in jar.items()}
        except CookieError:
            pass
        client = self.client_address[0]
        if self.app.trust_proxy:
            forwarded = self.headers.get("X-Forwarded-For", "")
            if forwarded:
                client = forwarded.split(",")[-1].strip() or client
        return Request(method, self.path, split.path, query, form, cookies, client,
                       self.headers.get("Host"), self.headers.get("Origin"))

    def _serve(self, method: str) -> None:
        req = self._request(method)
        if req is None:
            return
        try:
            reply = self.app.handle(req)
        except Exception:
            log.exception("desk page: %s %s", method, req.path)
            reply = Reply(HTTPStatus.INTERNAL_SERVER_ERROR,
                          "<!DOCTYPE html><meta charset=utf-8><p>Внутренняя ошибка / "
                          "Internal error (see the desk's log)</p>")
        data = reply.body.encode("utf-8")
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in {**SECURITY_HEADERS, **(reply.headers or {})}.items():
            self.send_header(k, v)
        for c in reply.cookies or []:
            self.send_header("Set-Cookie", c)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


CSS = """
body{font-family:"DejaVu Sans",sans-serif;margin:0;color:#222;font-size:14px}
header{background:#1f3a5f;color:#fff;padding:8px 16px}
header a{color:#fff;margin-right:12px}header .lang{float:right}
nav{display:inline}nav .who{margin-left:16px;opacity:.8}
form.inline{display:inline}main{padding:8px 16px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#eef}
tr.attention td{background:#fff3e0}
.error{color:#a00;font-weight:bold}.ok{color:#060}
label{margin-right:10px}form.login label{display:block;margin:6px 0}
section.actions form{border:1px solid #ddd;padding:6px 10px;margin:8px 0}
h2{font-size:16px;margin:10px 0 4px}
"""
