"""Fixtures for the sync tests: real mosquitto, desk keys, a desk consumer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync.desk import Desk
from sync.keys import key_id, public_b64
from tests.sync.broker import Broker


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One mosquitto for the session (tests that stop the broker start their own)."""
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "mosquitto").start()
    yield b
    b.stop()


class DeskKey:
    def __init__(self, name: str = "desk1") -> None:
        self.key = Ed25519PrivateKey.generate()
        self.kid = key_id(name, self.key.public_key())
        self.public_b64 = public_b64(self.key.public_key())

    def toml(self) -> str:
        return f'[mqtt.desk_keys]\n"{self.kid}" = "{self.public_b64}"\n'


@pytest.fixture(scope="session")
def desk_key() -> DeskKey:
    return DeskKey()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    assert predicate(), f"timed out after {timeout} s waiting for {what or predicate}"


def make_desk(broker: Broker, desk_key: DeskKey, terminal_keys: dict, db: Path,
              client_id: str = "desk", **kw) -> Desk:
    return Desk(
        "127.0.0.1", broker.port, desk_key.key, desk_key.kid, terminal_keys, db,
        client_id=client_id, **kw,
    )


class KitBroker:
    """mosquitto running the files `kiosk broker-kit init` wrote from deploy/mosquitto/
    (the shipped kiosk.conf and acl, included as Debian's mosquitto.conf does)."""

    def __init__(self, base: Path) -> None:
        from sync import broker_kit
        from tests.sync.broker import free_port

        self.port, self.desk_port = free_port(), free_port()
        self.kit = broker_kit.init(base / "kit", "127.0.0.1", self.port, self.desk_port,
                                   bind="127.0.0.1", days=30)
        self.certs = base / "certs"
        self.broker = Broker(base / "mosquitto", port=self.port,
                             listener=f"include_dir {self.kit.dir}\n")
        self._made: dict[str, tuple[Path, Path]] = {}

    def terminal(self, terminal_id: str) -> tuple[Path, Path]:
        from sync import broker_kit

        if terminal_id not in self._made:
            self._made[terminal_id] = broker_kit.terminal_cert(self.kit, terminal_id, self.certs)
        return self._made[terminal_id]

    def desk(self) -> tuple[Path, Path]:
        from sync import broker_kit

        if "desk" not in self._made:
            self._made["desk"] = broker_kit.desk_cert(self.kit, self.certs / "desk")
        return self._made["desk"]

    def desk_tls(self) -> tuple[Path, Path, Path]:
        return (self.kit.terminal_ca, *self.desk())


@pytest.fixture(scope="module")
def kit_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KitBroker]:
    kb = KitBroker(tmp_path_factory.mktemp("kit"))
    kb.broker.start()
    yield kb
    kb.broker.stop()
