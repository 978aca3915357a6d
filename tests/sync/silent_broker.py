"""A broker that takes connections and never answers: a real TCP listener that accepts
every connection, reads what comes and sends nothing. From a terminal it looks like a
NATS node holding a CONNECT while it waits for JetStream (its MQTT js_api_timeout)."""

from __future__ import annotations

import socket
import threading


class SilentBroker:
    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.got = 0  # bytes read: the CONNECT packets
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                pass
            else:
                conn.setblocking(False)
                with self._lock:
                    self.accepted += 1
                    self._held.append(conn)
            with self._lock:
                for c in self._held:
                    try:
                        self.got += len(c.recv(4096))
                    except (BlockingIOError, OSError):
                        pass

    def count(self) -> int:
        with self._lock:
            return self.accepted

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self._held:
            c.close()
        self.sock.close()
