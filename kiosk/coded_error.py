"""One error type for every refusal that carries a stable code.

The local API, the technician PIN check, the desk's commands and config documents and the
signed envelopes all refuse with a machine code (what clients, the desk and tests match
on; listed in docs/local-api.md and docs/mqtt.md) and a human message. They share this
base so a caller can treat any refusal the same way: `exc.code`, `exc.message`,
`exc.as_dict()`."""

from __future__ import annotations


class CodedError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
