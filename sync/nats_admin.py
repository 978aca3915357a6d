"""Just enough of the NATS client protocol to list and delete JetStream streams.

The operator's recovery after a full-cluster loss (docs/fleet.md "Resetting the MQTT
sessions") needs two JetStream API calls on a node's client port; a NATS client library
would be one more dependency to pin and ship for that. Two layers:

- pure framing (`parse_frame`, `connect_command`, `pub_command`, ...): bytes in, frames
  out, no socket, so the tests can table-test and fuzz them; garbage raises
  `NatsProtocolError`, never anything else;
- `NatsAdmin`, a blocking socket client on top of them, with `request()` and the two
  JetStream calls (`stream_names`, `delete_stream`).

Every failure is a `NatsAdminError` whose message is one line an operator can act on.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any

CRLF = b"\r\n"
# The server's default max_control_line; a longer line without CRLF is not NATS.
MAX_CONTROL_LINE = 4096
# The server's max_payload is 1 MiB by default and at most 64 MiB.
MAX_PAYLOAD = 64 * 1024 * 1024
RECV_CHUNK = 65536
DEFAULT_TIMEOUT_S = 5.0
CLIENT_NAME = "kiosk-nats-admin"
CLIENT_LANG = "python"
CLIENT_VERSION = "1"
PROTOCOL_DYNAMIC = 1  # protocol 1: the server may send INFO updates (cluster changes)
STATUS_NO_RESPONDERS = 503
STATUS_LINE_PREFIX = b"NATS/1.0"
INBOX_PREFIX = "_INBOX."
INBOX_TOKEN_BYTES = 12
SUBJECT_SPECIALS = ".*>"  # a token separator and the wildcards
SHOWN_BYTES = 60  # how much of an unexpected answer an error message quotes

JS_API = "$JS.API"
JS_STREAM_NAMES = f"{JS_API}.STREAM.NAMES"
JS_STREAM_DELETE = f"{JS_API}.STREAM.DELETE"
JS_STREAM_INFO = f"{JS_API}.STREAM.INFO"
JS_CONSUMER_DELETE = f"{JS_API}.CONSUMER.DELETE"
JS_STREAM_MSG_GET = f"{JS_API}.STREAM.MSG.GET"
# err_code values of the JetStream API (nats-server's errors.json)
JS_ERR_STREAM_NOT_FOUND = 10059
JS_ERR_CONSUMER_NOT_FOUND = 10014
JS_ERR_NOT_ENABLED_FOR_ACCOUNT = 10039
JS_ERR_NOT_ENABLED = 10076
JS_ERR_UNAVAILABLE = 10008  # no meta leader yet / cluster not ready
JS_ERR_NO_MESSAGE = 10037  # a message get found nothing


class NatsAdminError(Exception):
    """Anything that went wrong, as one line for the operator."""


class NatsProtocolError(NatsAdminError):
    """The peer sent bytes that are not the NATS client protocol."""


class Op(Enum):
    """The server-to-client operations of the NATS client protocol."""

    INFO = "INFO"
    MSG = "MSG"
    HMSG = "HMSG"
    PING = "PING"
    PONG = "PONG"
    OK = "+OK"
    ERR = "-ERR"


_ARGLESS = {Op.PING, Op.PONG, Op.OK}
_OPS = {op.value: op for op in Op}


@dataclass(frozen=True)
class Frame:
    """One parsed server frame. `text`: INFO's JSON or -ERR's message. `status`: the
    HMSG status code (503: no responders), None without one."""

    op: Op
    text: str = ""
    subject: str = ""
    sid: str = ""
    reply: str | None = None
    payload: bytes = b""
    status: int | None = None


def _show(data: bytes) -> str:
    return repr(bytes(data[:SHOWN_BYTES]))


def _size(token: bytes, what: str) -> int:
    if not token.isdigit():
        raise NatsProtocolError(f"{what} is not a number: {_show(token)}")
    value = int(token)
    if value > MAX_PAYLOAD:
        raise NatsProtocolError(f"{what} {value} is larger than {MAX_PAYLOAD} bytes")
    return value


def _status(headers: bytes) -> int | None:
    """The status code of a header block ("NATS/1.0 503\\r\\n..."), None without one."""
    first = headers.split(CRLF, 1)[0]
    if not first.startswith(STATUS_LINE_PREFIX):
        raise NatsProtocolError(f"header block without NATS/1.0: {_show(first)}")
    parts = first[len(STATUS_LINE_PREFIX):].split()
    return int(parts[0]) if parts and parts[0].isdigit() else None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def parse_frame(buf: bytes | bytearray) -> tuple[Frame | None, int]:
    """The frame at the start of `buf` and how many bytes it took, or (None, 0) when
    `buf` does not hold a whole frame yet. Raises NatsProtocolError for anything that
    cannot become NATS however many bytes follow."""
    end = buf.find(CRLF, 0, MAX_CONTROL_LINE + len(CRLF))
    if end < 0:
        if len(buf) > MAX_CONTROL_LINE:
            raise NatsProtocolError(f"no line end within {MAX_CONTROL_LINE} bytes: "
                                    f"{_show(buf)}")
        return None, 0
    line = bytes(buf[:end])
    after = end + len(CRLF)
    name, _, rest = line.partition(b" ")
    op = _OPS.get(_text(name).upper()) if name.isascii() else None
    if op is None:
        raise NatsProtocolError(f"not a NATS operation: {_show(line)}")
    if op in _ARGLESS:
        if rest.strip():
            raise NatsProtocolError(f"{op.value} with arguments: {_show(line)}")
        return Frame(op), after
    if op is Op.INFO:
        return Frame(op, text=_text(rest.strip())), after
    if op is Op.ERR:
        return Frame(op, text=_text(rest.strip()).strip("'")), after
    args = rest.split()
    if op is Op.MSG:
        if len(args) not in (3, 4):
            raise NatsProtocolError(f"MSG needs 3 or 4 arguments: {_show(line)}")
        hdr_len, total = 0, _size(args[-1], "MSG size")
    else:
        if len(args) not in (4, 5):
            raise NatsProtocolError(f"HMSG needs 4 or 5 arguments: {_show(line)}")
        hdr_len, total = _size(args[-2], "HMSG header size"), _size(args[-1], "HMSG size")
        if hdr_len > total:
            raise NatsProtocolError(f"HMSG header size above its total: {_show(line)}")
    if len(buf) < after + total + len(CRLF):
        return None, 0
    body = bytes(buf[after:after + total])
    if buf[after + total:after + total + len(CRLF)] != CRLF:
        raise NatsProtocolError(f"{op.value} payload not followed by CRLF: {_show(line)}")
    subject, sid = _text(args[0]), _text(args[1])
    reply = _text(args[2]) if len(args) == (4 if op is Op.MSG else 5) else None
    status = _status(body[:hdr_len]) if op is Op.HMSG else None
    return (Frame(op, subject=subject, sid=sid, reply=reply, payload=body[hdr_len:],
                  status=status), after + total + len(CRLF))


def iter_frames(buf: bytearray) -> Iterator[Frame]:
    """Every whole frame in `buf`, removed from it as they are taken."""
    while True:
        frame, used = parse_frame(buf)
        if frame is None:
            return
        del buf[:used]
        yield frame


def _check_token(value: str, what: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise NatsAdminError(f"{what} must be non-empty without spaces: {value[:40]!r}")
    return value


def _check_name(value: str, what: str) -> str:
    """A stream or consumer name, one token of a JetStream API subject: a '.' or a
    wildcard would make it another subject (NATS's own names never hold them)."""
    if any(c in value for c in SUBJECT_SPECIALS):
        raise NatsAdminError(f"{what} {value[:40]!r}: '.', '*' and '>' would make it "
                             f"another subject")
    return _check_token(value, what)


@dataclass(frozen=True)
class ConnectOptions:
    """CONNECT's fields. `headers`/`no_responders`: a request nobody answers comes back
    at once as status 503 instead of waiting for the timeout (JetStream not enabled)."""

    user: str | None = None
    password: str | None = None
    name: str = CLIENT_NAME
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "verbose": False, "pedantic": False, "name": self.name, "lang": CLIENT_LANG,
            "version": CLIENT_VERSION, "protocol": PROTOCOL_DYNAMIC, "echo": False,
            "headers": True, "no_responders": True,
        }
        if self.user is not None:
            doc["user"] = self.user
            doc["pass"] = self.password or ""
        doc.update(self.extra)
        return doc


def connect_command(options: ConnectOptions) -> bytes:
    return b"CONNECT " + json.dumps(options.as_json(), separators=(",", ":")).encode() + CRLF


def ping_command() -> bytes:
    return b"PING" + CRLF


def pong_command() -> bytes:
    return b"PONG" + CRLF


def sub_command(subject: str, sid: str) -> bytes:
    return f"SUB {_check_token(subject, 'subject')} {_check_token(sid, 'sid')}".encode() + CRLF


def unsub_command(sid: str) -> bytes:
    return f"UNSUB {_check_token(sid, 'sid')}".encode() + CRLF


def pub_command(subject: str, payload: bytes, reply: str | None = None) -> bytes:
    head = f"PUB {_check_token(subject, 'subject')} "
    if reply is not None:
        head += f"{_check_token(reply, 'reply subject')} "
    return f"{head}{len(payload)}".encode() + CRLF + payload + CRLF


# -- JetStream API answers -------------------------------------------------------------------


@dataclass(frozen=True)
class JsApiError:
    """The "error" object of a JetStream API response."""

    code: int
    err_code: int
    description: str

    def __str__(self) -> str:
        return f"{self.description} (code {self.code}, err_code {self.err_code})"


@dataclass(frozen=True)
class StreamNamesPage:
    names: tuple[str, ...]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True)
class StreamInfo:
    """What tells one incarnation of a stream from the next: its creation time."""

    name: str
    created: str
    messages: int


@dataclass(frozen=True)
class StoredMessage:
    """One message of a stream as $JS.API.STREAM.MSG.GET returns it."""

    subject: str
    seq: int
    data: bytes
    time: str  # RFC 3339, as the server wrote it


class JsApiRefused(NatsAdminError):
    """JetStream answered with an error object."""

    def __init__(self, what: str, error: JsApiError) -> None:
        super().__init__(f"JetStream refused {what}: {error}{_hint(error)}")
        self.error = error


def _hint(error: JsApiError) -> str:
    if error.err_code in (JS_ERR_NOT_ENABLED, JS_ERR_NOT_ENABLED_FOR_ACCOUNT):
        return " - is this a node of the fleet's cluster, with JetStream on?"
    if error.err_code == JS_ERR_UNAVAILABLE:
        return " - the cluster has no JetStream leader yet: wait and run it again"
    return ""


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise NatsProtocolError(f"{what}: the answer is not JSON: {_show(payload)}") from exc
    if not isinstance(doc, dict):
        raise NatsProtocolError(f"{what}: the answer is not a JSON object: {_show(payload)}")
    return doc


def _int(doc: dict[str, Any], key: str, what: str) -> int:
    value = doc.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise NatsProtocolError(f"{what}: {key!r} is not a count: {value!r:.40}")
    return value


def api_error(doc: dict[str, Any], what: str) -> JsApiError | None:
    """The response's error object, None when it has none."""
    err = doc.get("error")
    if err is None:
        return None
    if not isinstance(err, dict):
        raise NatsProtocolError(f"{what}: 'error' is not an object: {err!r:.40}")
    return JsApiError(_int(err, "code", what), _int(err, "err_code", what),
                      str(err.get("description", "")) or "no description")


def parse_stream_names(payload: bytes) -> StreamNamesPage:
    """A $JS.API.STREAM.NAMES response ("streams" is null when there are none)."""
    what = JS_STREAM_NAMES
    doc = _json_object(payload, what)
    err = api_error(doc, what)
    if err is not None:
        raise JsApiRefused("the stream list", err)
    streams = doc.get("streams")
    if streams is None:
        streams = []
    if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
        raise NatsProtocolError(f"{what}: 'streams' is not a list of names: {streams!r:.60}")
    return StreamNamesPage(tuple(streams), _int(doc, "total", what),
                           _int(doc, "offset", what), _int(doc, "limit", what))


def _answer(payload: bytes, what: str, absent: tuple[int, ...], doing: str
            ) -> dict[str, Any] | None:
    """A JetStream API response's object; None when its error says the thing asked for is
    not there (`absent` err_codes); JsApiRefused, about `doing`, for any other error."""
    doc = _json_object(payload, what)
    err = api_error(doc, what)
    if err is None:
        return doc
    if err.err_code in absent:
        return None
    raise JsApiRefused(doing, err)


def parse_delete(payload: bytes, stream: str) -> bool:
    """A $JS.API.STREAM.DELETE response: True deleted, False the stream was not there."""
    what = f"{JS_STREAM_DELETE}.{stream}"
    doc = _answer(payload, what, (JS_ERR_STREAM_NOT_FOUND,), f"deleting {stream}")
    if doc is None:
        return False
    if doc.get("success") is not True:
        raise NatsProtocolError(f"{what}: neither success nor an error: {_show(payload)}")
    return True


def parse_consumer_delete(payload: bytes, stream: str, consumer: str) -> bool:
    """A $JS.API.CONSUMER.DELETE response: True deleted, False the consumer was not there
    (nor, NATS answers alike, its stream)."""
    what = f"{JS_CONSUMER_DELETE}.{stream}.{consumer}"
    doc = _answer(payload, what, (JS_ERR_CONSUMER_NOT_FOUND, JS_ERR_STREAM_NOT_FOUND),
                  f"deleting consumer {consumer} of {stream}")
    if doc is None:
        return False
    if doc.get("success") is not True:
        raise NatsProtocolError(f"{what}: neither success nor an error: {_show(payload)}")
    return True


def parse_msg_get(payload: bytes, stream: str) -> StoredMessage | None:
    """A $JS.API.STREAM.MSG.GET response; None when no message matched."""
    what = f"{JS_STREAM_MSG_GET}.{stream}"
    doc = _answer(payload, what, (JS_ERR_NO_MESSAGE,), f"reading a message of {stream}")
    if doc is None:
        return None
    msg = doc.get("message")
    if not isinstance(msg, dict):
        raise NatsProtocolError(f"{what}: no message object: {_show(payload)}")
    try:
        data = base64.b64decode(str(msg.get("data") or ""), validate=True)
    except binascii.Error:
        raise NatsProtocolError(f"{what}: the message's data is not base64: "
                                f"{_show(payload)}") from None
    return StoredMessage(str(msg.get("subject", "")), _int(msg, "seq", what), data,
                         str(msg.get("time", "")))


def parse_stream_info(payload: bytes, stream: str) -> StreamInfo | None:
    """A $JS.API.STREAM.INFO response; None when there is no such stream."""
    what = f"{JS_STREAM_INFO}.{stream}"
    doc = _answer(payload, what, (JS_ERR_STREAM_NOT_FOUND,), f"the information on {stream}")
    if doc is None:
        return None
    created, state = doc.get("created"), doc.get("state")
    if not isinstance(created, str) or not isinstance(state, dict):
        raise NatsProtocolError(f"{what}: no 'created' time or 'state': {_show(payload)}")
    return StreamInfo(stream, created, _int(state, "messages", what))


# -- the socket client -----------------------------------------------------------------------


class NatsAdmin:
    """A blocking client for one request at a time; `with NatsAdmin(...) as nats:`."""

    def __init__(self, host: str, port: int, user: str | None = None,
                 password: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.options = ConnectOptions(user=user, password=password)
        self.server_info: dict[str, Any] = {}
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._sids = 0

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> NatsAdmin:
        try:
            self.connect()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> None:
        """TCP, the server's INFO, CONNECT, and a PING answered by PONG (the server
        answers -ERR instead when it refuses the user)."""
        try:
            self._sock = socket.create_connection((self.host, self.port), self.timeout)
        except ConnectionRefusedError as exc:
            raise NatsAdminError(f"cannot connect to {self.where}: connection refused "
                                 f"(is nats-server running, is this its client port?)") from exc
        except TimeoutError as exc:
            raise NatsAdminError(f"cannot connect to {self.where}: no answer within "
                                 f"{self.timeout:g} s") from exc
        except OSError as exc:
            raise NatsAdminError(f"cannot connect to {self.where}: {exc}") from exc
        not_nats = f"{self.where} is not a NATS client port"
        try:
            first = self._next_frame(time.monotonic() + self.timeout, "INFO")
        except NatsProtocolError as exc:
            raise NatsAdminError(f"{not_nats}: {exc}") from None
        except _Timeout:
            raise NatsAdminError(f"{not_nats}: no INFO within {self.timeout:g} s") from None
        except _Closed:
            raise NatsAdminError(f"{not_nats}: it closed the connection without an INFO") \
                from None
        if first.op is not Op.INFO:
            raise NatsAdminError(f"{self.where} is not a NATS client port: it began with "
                                 f"{first.op.value}, not INFO")
        try:
            info = json.loads(first.text)
        except (ValueError, RecursionError) as exc:
            raise NatsAdminError(f"{self.where} is not a NATS client port: its INFO is not "
                                 f"JSON") from exc
        self.server_info = info if isinstance(info, dict) else {}
        if self.server_info.get("tls_required"):
            raise NatsAdminError(f"{self.where} requires TLS on its client port, which this "
                                 f"tool does not speak: use the loopback client port")
        self._send(connect_command(self.options) + ping_command())
        pong = self._next_frame(time.monotonic() + self.timeout, "PONG after CONNECT")
        if pong.op is not Op.PONG:
            raise NatsAdminError(f"{self.where}: expected PONG after CONNECT, got "
                                 f"{pong.op.value}")

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            raise NatsAdminError(f"{self.where}: not connected")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise NatsAdminError(f"{self.where}: sending failed: {exc}") from exc

    def _next_frame(self, deadline: float, waiting_for: str) -> Frame:
        """The next frame but PING (answered) and +OK; -ERR raises with its text."""
        while True:
            for frame in iter_frames(self._buf):
                if frame.op is Op.PING:
                    self._send(pong_command())
                    continue
                if frame.op is Op.OK:
                    continue
                if frame.op is Op.ERR:
                    raise NatsAdminError(self._explain_err(frame.text))
                return frame
            self._recv(deadline, waiting_for)

    def _recv(self, deadline: float, waiting_for: str) -> None:
        if self._sock is None:
            raise NatsAdminError(f"{self.where}: not connected")
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Timeout(f"{self.where}: no {waiting_for} within {self.timeout:g} s")
        self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(RECV_CHUNK)
        except TimeoutError as exc:
            raise _Timeout(f"{self.where}: no {waiting_for} within {self.timeout:g} s") \
                from exc
        except OSError as exc:
            raise NatsAdminError(f"{self.where}: connection lost: {exc}") from exc
        if not chunk:
            raise _Closed(f"{self.where} closed the connection while waiting for "
                          f"{waiting_for}")
        self._buf += chunk

    def _explain_err(self, text: str) -> str:
        if "authorization violation" in text.lower():
            who = f"user {self.options.user!r}" if self.options.user else "no user"
            return (f"{self.where} refused {who}: {text} (wrong user or password, or a "
                    f"user not allowed on the client port)")
        if "permissions violation" in text.lower():
            return f"{self.where}: {text} (users.conf's operator section allows less)"
        return f"{self.where} answered -ERR: {text}"

    def request(self, subject: str, payload: bytes, timeout: float | None = None) -> Frame:
        """Publish with a fresh `_INBOX.<random>` reply subject and return the answer.
        Status 503 (no responders) and no answer at all raise NatsAdminError."""
        wait = self.timeout if timeout is None else timeout
        self._sids += 1
        sid = str(self._sids)
        inbox = INBOX_PREFIX + secrets.token_hex(INBOX_TOKEN_BYTES)
        self._send(sub_command(inbox, sid) + pub_command(subject, payload, inbox))
        deadline = time.monotonic() + wait
        try:
            while True:
                frame = self._next_frame(deadline, f"an answer to {subject}")
                if frame.op in (Op.MSG, Op.HMSG) and frame.sid == sid:
                    break
        except _Timeout:
            raise NatsAdminError(f"{self.where}: no answer to {subject} within {wait:g} s "
                                 f"(JetStream not enabled for this user, or no JetStream "
                                 f"leader yet: wait and run it again)") from None
        self._send(unsub_command(sid))
        if frame.status == STATUS_NO_RESPONDERS:
            raise NatsAdminError(f"{self.where}: nobody answers {subject} (no responders): "
                                 f"JetStream is not enabled on this server")
        return frame

    def stream_names(self) -> list[str]:
        """Every stream of the account, page after page."""
        names: list[str] = []
        while True:
            page = parse_stream_names(self.request(
                JS_STREAM_NAMES, json.dumps({"offset": len(names)}).encode()).payload)
            names.extend(page.names)
            if not page.names or len(names) >= page.total:
                return names

    def stream_info(self, name: str) -> StreamInfo | None:
        """The stream's creation time and size (the tests tell re-created streams by it;
        the operator user of users.conf may not ask for it)."""
        subject = f"{JS_STREAM_INFO}.{_check_name(name, 'stream name')}"
        return parse_stream_info(self.request(subject, b"").payload, name)

    def delete_stream(self, name: str) -> bool:
        """True: deleted; False: there was no such stream."""
        subject = f"{JS_STREAM_DELETE}.{_check_name(name, 'stream name')}"
        return parse_delete(self.request(subject, b"").payload, name)

    def last_message(self, stream: str, subject: str) -> StoredMessage | None:
        """The stream's last message on `subject` (a literal subject: no wildcard), None
        when it has none."""
        if "*" in subject or ">" in subject or not subject:
            raise NatsAdminError(f"subject {subject[:40]!r}: a literal subject, no wildcard")
        request = json.dumps({"last_by_subj": _check_token(subject, "subject")}).encode()
        return parse_msg_get(self.request(
            f"{JS_STREAM_MSG_GET}.{_check_name(stream, 'stream name')}", request).payload,
            stream)

    def delete_consumer(self, stream: str, name: str) -> bool:
        """True: deleted; False: there was no such consumer."""
        subject = (f"{JS_CONSUMER_DELETE}.{_check_name(stream, 'stream name')}."
                   f"{_check_name(name, 'consumer name')}")
        return parse_consumer_delete(self.request(subject, b"").payload, stream, name)


class _Timeout(NatsAdminError):
    """No frame before the deadline (kept apart so callers can say what it means)."""


class _Closed(NatsAdminError):
    """The server closed the connection."""
