"""The shipped nginx file (deploy/nginx/kiosk-desk.conf) in front of the page, over TLS.

nginx runs with the file as shipped; only what differs per machine is replaced (ports,
the certificate paths, the worker's address). Through it a login works, the session
cookie is Secure, a POST from the page's own form passes the Origin check (the Host the
browser sent reaches the page), a client cannot choose the address the audit records,
and plain HTTP is sent to HTTPS."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.loopback import free_port, port_open
from sync.desk_service.db import DeskDB
from sync.desk_service.operators import Operators
from sync.desk_service.web import DeskWeb
from tests.desk.web import PASSWORDS, Client, add_operators
from tests.sync.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx" / "kiosk-desk.conf"
START_TIMEOUT_S = 10.0


def _nginx() -> str:
    exe = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(exe).exists():
        pytest.fail("nginx is not installed: run `make setup` (scripts/system-deps.sh)")
    return exe


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _site(worker_port: int, https_port: int, http_port: int, cert: Path, key: Path) -> str:
    text = SHIPPED.read_text(encoding="utf-8")
    for old, new in (("server 127.0.0.1:8080;", f"server 127.0.0.1:{worker_port};"),
                     ("listen 443 ssl;", f"listen 127.0.0.1:{https_port} ssl;"),
                     ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                     ("/etc/ssl/desk/fullchain.pem", str(cert)),
                     ("/etc/ssl/desk/privkey.pem", str(key))):
        assert old in text, f"the shipped file no longer has {old!r}"
        text = text.replace(old, new)
    return text


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[DeskDB, int, int]]:
    store = DeskDB(tmp_path / "desk.sqlite")
    add_operators(store)
    web = DeskWeb(store, secure_cookies=True, trust_proxy=True).start("127.0.0.1", 0)
    cert, key = _self_signed(tmp_path)
    https_port, http_port = free_port(), free_port()
    (tmp_path / "site.conf").write_text(_site(web.port, https_port, http_port, cert, key))
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir()
    (tmp_path / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    proc = subprocess.Popen([_nginx(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-e", str(tmp_path / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: port_open(https_port) or proc.poll() is not None, START_TIMEOUT_S,
                 "nginx listening")
        assert proc.poll() is None, (tmp_path / "error.log").read_text(errors="replace")
        yield store, https_port, http_port
    finally:
        proc.terminate()
        proc.wait(10)
        web.stop()
        store.close()


class TlsClient(Client):
    """The page's test client, over HTTPS to the proxy (its certificate is self-signed)."""

    def connection(self) -> http.client.HTTPConnection:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60,
                                           context=context)


def test_the_shipped_nginx_file_carries_login_csrf_and_the_client_address(proxied):
    store, https_port, http_port = proxied
    c = TlsClient(https_port, origin=f"https://127.0.0.1:{https_port}")
    _, page = c.get("/login")
    assert "kd_pre" in c.cookies
    status, headers, _ = c.request(
        "POST", "/login",
        {"pre": _pre(page), "login": "op1", "password": PASSWORDS["op1"]},
        headers={"X-Forwarded-For": "203.0.113.66"},  # a client naming its own address
    )
    assert status == 303
    cookie = next(v for k, v in headers.items() if k.lower() == "set-cookie")
    assert "Secure" in cookie and "HttpOnly" in cookie
    assert headers.get("Strict-Transport-Security")
    status, text = c.get("/")
    assert status == 200 and "op1 (operator)" in text
    # a POST from the page's own form: Origin https://127.0.0.1:PORT matches the Host
    status, text = c.post("/logout", {"csrf": c.csrf()})
    assert status == 200 and 'name="pre"' in text  # back on the login page
    logins = [r for r in Operators(store.engine).audit_rows() if r["action"] == "login"]
    assert logins and {r["client"] for r in logins} == {"127.0.0.1"}
    plain = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    plain.request("GET", "/search?q=1", headers={"Host": "desk.example.ru"})
    resp = plain.getresponse()
    assert resp.status == 301
    assert resp.headers["Location"] == "https://desk.example.ru/search?q=1"


def _pre(page: str) -> str:
    from tests.desk.web import PRE_RE

    m = PRE_RE.search(page)
    assert m, page
    return m.group(1)
