"""Every refusal with a stable code is a CodedError: callers handle them one way."""

from __future__ import annotations

from pathlib import Path

import pytest

from kiosk.api_client import ApiRequestError
from kiosk.api_server import ApiError
from kiosk.coded_error import CodedError
from kiosk.engine import IntentError
from kiosk.ledger.desk import DeskRefused
from kiosk.technician import TechnicianAuthError
from sync.commands import CommandError
from sync.desk_config import ConfigDocError
from sync.envelope import EnvelopeError

CODED = (ApiRequestError, ApiError, DeskRefused, IntentError, TechnicianAuthError,
         CommandError, ConfigDocError, EnvelopeError)


@pytest.mark.parametrize("cls", CODED, ids=lambda c: c.__name__)
def test_each_refusal_carries_code_and_message(cls: type[CodedError]) -> None:
    exc = cls("some_code", "what went wrong")
    assert isinstance(exc, CodedError)
    assert (exc.code, exc.message) == ("some_code", "what went wrong")
    assert exc.as_dict() == {"code": "some_code", "message": "what went wrong"}


def test_value_errors_stay_value_errors() -> None:
    """Parsers' callers catch ValueError for bad input; the shared base keeps that."""
    for cls in (CommandError, ConfigDocError, EnvelopeError):
        assert issubclass(cls, ValueError)


def test_the_client_error_names_its_code() -> None:
    assert str(ApiRequestError("not_found", "no such payment")) == "not_found: no such payment"


def test_a_command_refusal_keeps_its_extra_fields() -> None:
    exc = CommandError("stale_seq", "seq 3 is not above 5", last_seq=5)
    assert exc.extra == {"last_seq": 5} and exc.code == "stale_seq"


def test_no_other_hand_rolled_code_and_message_class() -> None:
    """A new refusal type derives from CodedError instead of writing `self.code = code`
    again. ui/ is outside: it may import nothing of kiosk/ but the API client."""
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for top in ("agent", "kiosk", "sync", "drivers")
        for path in sorted((root / top).rglob("*.py"))
        if path.name != "coded_error.py"
        and "self.code = code" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
