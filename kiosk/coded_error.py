"""One error type for every refusal that carries a stable code.

The local API, the technician PIN check, the desk's commands and config documents and the
signed envelopes all refuse with a machine code (what clients, the desk and tests match
on; listed in docs/local-api.md and docs/mqtt.md) and a human message. They share this
base so a caller can treat any refusal the same way: `exc.code`, `exc.message`,
`exc.as_dict()`. `data` carries the figures a client needs to word the refusal in its
own language (attempts left, seconds until a lockout ends), so no client parses the
English message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class CodedError(Exception):
    def __init__(self, code: str, message: str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data: dict[str, Any] = dict(data or {})

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            out["data"] = dict(self.data)
        return out
