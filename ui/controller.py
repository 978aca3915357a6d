"""What a screen may ask of the app's controller (ui.app.KioskUi implements it).

Screens type against this Protocol instead of importing the app, so the import arrows run
one way: app → screens → controller.
"""

from __future__ import annotations

from typing import Any, Protocol

from ui.config import UiConfig
from ui.link import Reply


class TechOps(Protocol):
    """The technician session as the technician screens use it."""

    message: str

    def login(self, pin: str, done: Any) -> None: ...

    def leave(self, *args: Any) -> None: ...

    def call(self, op: str, reply: Reply, **fields: Any) -> None: ...


class Controller(Protocol):
    cfg: UiConfig
    lang: str
    snap: dict[str, Any] | None
    connected: bool
    link_failed: bool  # a connection attempt failed before or since the first snapshot
    catalog: dict[str, Any] | None
    local: str | None
    tech: Any  # ui.tech_session.TechSession (TechOps)
    help_center: dict[str, Any] | None  # the core's help center (ui/screens/help.py)

    @property
    def session(self) -> dict[str, Any] | None: ...

    @property
    def phone(self) -> str: ...

    @property
    def terminal_id(self) -> str: ...

    def t(self, key: str, **values: Any) -> str: ...

    def core_text(self, texts: dict[str, Any] | None) -> str: ...

    def intent(self, name: str, reply: Reply | None = None, **args: Any) -> None: ...

    def request(self, op: str, reply: Reply | None = None, **fields: Any) -> None: ...

    def activity(self) -> None: ...

    def help_event(self, kind: str, reply: Reply | None = None, **args: Any) -> None: ...

    def open_check(self) -> None: ...

    def show_local(self, name: str) -> None: ...

    def close_local(self) -> None: ...

    def close_help_overlay(self) -> None: ...
