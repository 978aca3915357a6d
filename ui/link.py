"""The UI's link to the core: two background threads, each owning one ApiClient.

- The *watch* thread connects, says hello with subscribe=true and reads pushed snapshots;
  when nothing arrives for a while it asks for a snapshot, so a core that hangs is noticed
  as surely as one that closes the socket. It reconnects every `retry_s` while the core
  is unreachable.
- The *request* thread sends intents and technician ops, one at a time, on a second
  connection, so a slow op never delays the snapshots that keep the screen true.

Nothing here touches Kivy widgets: results and snapshots are handed to callbacks that the
caller wraps for the main thread (ui.app does it with Clock.schedule_once). Intents are
never re-sent after a broken connection: they are not idempotent ("back" twice is two
screens), and the screen follows the next snapshot anyway.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kiosk.api_client import ApiClient, ApiRequestError

log = logging.getLogger("kiosk.ui.link")

HEARTBEAT_S = 3.0  # ask for a snapshot when no push came for this long
REQUEST_TIMEOUT_S = 70.0  # an encashment prints its report inside the op

Snapshot = dict[str, Any]
Reply = Callable[[Any, "LinkError | None"], None]


class LinkError(Exception):
    """A request failed: `code` is the core's error code, or `unreachable`; `data` the
    figures the UI words the refusal with (attempts left, seconds until unlocked)."""

    def __init__(self, code: str, message: str = "", data: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data: dict[str, Any] = dict(data or {})


class CoreLink:
    def __init__(
        self,
        socket_path: Path | str,
        on_hello: Callable[[dict[str, Any]], None],
        on_snapshot: Callable[[Snapshot], None],
        on_lost: Callable[[str], None],
        retry_s: float = 1.0,
    ) -> None:
        self.socket_path = str(socket_path)
        self._on_hello = on_hello
        self._on_snapshot = on_snapshot
        self._on_lost = on_lost
        self.retry_s = retry_s
        self._stop = threading.Event()
        self._requests: queue.Queue[tuple[str, dict[str, Any], Reply | None] | None] = (
            queue.Queue()
        )
        self._watch_client: ApiClient | None = None  # for tools that want to look
        self._threads: list[threading.Thread] = []
        self.connected = False
        # +1 on every hello: a request connection older than the newest hello belongs to a
        # core that is gone, so it is replaced before sending (the first tap after a core
        # restart is not lost on a dead socket)
        self.generation = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (("ui-watch", self._watch), ("ui-requests", self._serve)):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._requests.put(None)
        # The request thread ends at once; the watch thread may sit in recv() for up to
        # HEARTBEAT_S and is a daemon: it checks the flag and reports nothing more.
        for t in self._threads:
            if t.name == "ui-requests":
                t.join(timeout=5)

    # -- requests (any thread) ---------------------------------------------------------
    def request(self, op: str, reply: Reply | None = None, **fields: Any) -> None:
        self._requests.put((op, fields, reply))

    def intent(self, name: str, reply: Reply | None = None, **args: Any) -> None:
        self.request("intent", reply, intent=name, args=args)

    # -- the watch thread --------------------------------------------------------------
    def _watch(self) -> None:
        announced_down = False
        while not self._stop.is_set():
            client = ApiClient(self.socket_path, timeout=HEARTBEAT_S)
            try:
                hello = client.connect(subscribe=True, client="kiosk-ui")
            except (OSError, ValueError, ApiRequestError) as exc:
                client.close()
                if not announced_down:  # say it once, not once a second
                    self._lost(f"cannot connect: {exc}")
                    announced_down = True
                self._stop.wait(self.retry_s)
                continue
            announced_down = False
            self._watch_client = client
            self.generation += 1
            self.connected = True
            self._on_hello(hello)
            self._on_snapshot(hello["snapshot"])
            try:
                self._follow(client)
            except (OSError, ValueError, ApiRequestError) as exc:
                if not self._stop.is_set():
                    self._lost(f"lost the core: {exc}")
                    announced_down = True
            finally:
                self._watch_client = None
                client.close()
            if not self._stop.is_set():
                self._stop.wait(min(self.retry_s, 0.2))

    def _follow(self, client: ApiClient) -> None:
        last = client.snapshot
        while not self._stop.is_set():
            seen = last

            def fresh(s: dict[str, Any], seen: dict[str, Any] | None = seen) -> bool:
                return s is not seen

            try:
                snap = client.wait_for(fresh, timeout=HEARTBEAT_S)
            except TimeoutError:
                snap = client.request("snapshot")  # raises if the core hangs or left
            last = client.snapshot = snap
            self._on_snapshot(snap)

    def _lost(self, reason: str) -> None:
        self.connected = False
        log.warning("%s", reason)
        self._on_lost(reason)

    # -- the request thread ------------------------------------------------------------
    def _serve(self) -> None:
        client: ApiClient | None = None
        born = -1  # the generation `client` was connected in
        while True:
            item = self._requests.get()
            if item is None or self._stop.is_set():
                break
            op, fields, reply = item
            result: Any = None
            error: LinkError | None = None
            try:
                if client is not None and born != self.generation:
                    client.close()
                    client = None
                if client is None:
                    born = self.generation
                    client = ApiClient(self.socket_path, timeout=REQUEST_TIMEOUT_S)
                    client.connect(subscribe=False, client="kiosk-ui")
                result = client.request(op, **fields)
            except ApiRequestError as exc:
                error = LinkError(exc.code, exc.message, exc.data)
            except (OSError, ValueError) as exc:
                error = LinkError("unreachable", str(exc))
                if client is not None:
                    client.close()
                client = None
            if reply is not None:
                try:
                    reply(result, error)
                except Exception:  # a bad callback must not stop the link
                    log.exception("reply callback for %s failed", op)
        if client is not None:
            client.close()


def wait_connected(link: CoreLink, timeout: float) -> bool:
    """For tools and tests: block until the watch thread has said hello."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if link.connected:
            return True
        time.sleep(0.01)
    return False
