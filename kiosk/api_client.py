"""A small synchronous client of the local API (CLI, tests, demo, and the UI's link).

It imports nothing of the core: the UI may use it without pulling in the engine.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.coded_error import CodedError

API_VERSION = 1


class ApiRequestError(CodedError):
    """The core refused a request (the code is the server's ApiError code)."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ApiClient:
    def __init__(self, path: Path | str, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = itertools.count(1)
        self.snapshot: dict[str, Any] | None = None

    def connect(self, subscribe: bool = True, client: str = "kiosk-cli") -> dict[str, Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self._sock = sock
        hello = self.request("hello", subscribe=subscribe, client=client)
        self.snapshot = hello["snapshot"]
        return hello

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- wire --------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        assert self._sock is not None, "not connected"
        self._sock.sendall(data)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        assert self._sock is not None, "not connected"
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message from the core in time")
            self._sock.settimeout(remaining)
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the core closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        if msg.get("push") == "snapshot":
            self.snapshot = msg["snapshot"]
        return msg

    def read_reply(self, msg_id: Any) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read_message(deadline)
            if "push" not in msg and msg.get("id") == msg_id:
                return msg

    def request(self, op: str, **fields: Any) -> Any:
        msg_id = next(self._ids)
        payload = {"v": API_VERSION, "id": msg_id, "op": op, **fields}
        self.send_raw(json.dumps(payload, ensure_ascii=False).encode() + b"\n")
        reply = self.read_reply(msg_id)
        if not reply.get("ok"):
            err = reply.get("error") or {}
            data = err.get("data")
            raise ApiRequestError(
                err.get("code", "unknown"), err.get("message", ""),
                data if isinstance(data, dict) else None,
            )
        return reply.get("result")

    def intent(self, name: str, **args: Any) -> Any:
        return self.request("intent", intent=name, args=args)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Read pushed snapshots until one satisfies the predicate."""
        deadline = time.monotonic() + timeout
        while True:
            if self.snapshot is not None and predicate(self.snapshot):
                return self.snapshot
            self._read_message(deadline)
