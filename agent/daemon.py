"""`kiosk run`: the core daemon. Owns the ledger, the devices and the local API socket."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time

from kiosk.api_server import ApiServer
from kiosk.config import Config, ConfigError
from kiosk.devices import build_acceptor, build_printer
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger, LedgerError, LedgerIdentityError
from kiosk.preflight import check_devices
from kiosk.sdnotify import Notifier

log = logging.getLogger("kiosk.daemon")  # the name operators filter the journal by: kept

TICK_S = 0.1
# Fault injection for the watchdog test: while this file exists the main loop stalls, as
# a loop stuck on a lock or a hung device would.
STALL_ENV = "KIOSK_FAULT_STALL_FILE"
LOCK_NAME = "kiosk.lock"


class AlreadyRunning(RuntimeError):
    """Another core holds this data folder: two cores would both drive the acceptor."""


def lock_data_dir(config: Config) -> int:
    """An exclusive flock on data_dir/kiosk.lock for the life of the process (the kernel
    drops it when the process dies, however it dies). Returns the open descriptor."""
    data = config.paths.data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"cannot create the data directory {data}: {exc.strerror}") from exc
    try:
        fd = os.open(data / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        raise LedgerError(f"cannot create the lock file in {data}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = b""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 32, 0).strip()
        os.close(fd)
        pid = f" (pid {holder.decode(errors='replace')})" if holder else ""
        raise AlreadyRunning(
            f"another kiosk core is already running on {data}{pid}; stop it first "
            "(systemctl stop kiosk) - two cores must never share a ledger or an acceptor"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    started = time.monotonic()
    ledger = Ledger(config.paths.ledger, config.terminal.id)
    try:
        ledger.open()
    except LedgerIdentityError as exc:
        # Not this terminal's ledger: run, reachable by the technician and the desk, but
        # out of service until `kiosk ledger init --new` (the engine reads ledger.blocked).
        log.error("ledger identity: %s", exc)
    engine = PaymentEngine(config, ledger, build_acceptor(config), build_printer(config))
    server = ApiServer(engine, config.paths.socket)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.to_thread(engine.start)
    await server.start()
    agent = None
    if config.mqtt.enabled:
        from sync.agent import SyncAgent  # sync/ builds on kiosk/, never the other way

        try:
            agent = SyncAgent(config, engine, ledger)
            agent.start()
        except LedgerError as exc:  # the agent reports a blocked ledger; this is a last resort
            log.error("sync agent not started: %s", exc)
            agent = None
    log.info(
        "ready in %.0f ms: terminal %s, socket %s, ledger %s",
        (time.monotonic() - started) * 1000,
        config.terminal.id,
        config.paths.socket,
        config.paths.ledger,
    )
    print(f"READY socket={config.paths.socket}", flush=True)
    notifier = Notifier()
    notifier.ready(f"terminal {config.terminal.id}")
    if ready is not None:
        ready.set()
    stall = os.environ.get(STALL_ENV)
    try:
        while not stop.is_set() and not engine.restart_requested:
            await asyncio.to_thread(engine.tick)
            while stall and os.path.exists(stall):
                time.sleep(TICK_S)  # deliberately blocks the loop: no ticks, no pings
            notifier.watchdog()
            try:
                await asyncio.wait_for(stop.wait(), TICK_S)
            except TimeoutError:
                pass
    finally:
        notifier.stopping()
        if agent is not None:
            await asyncio.to_thread(agent.stop)
        await server.stop()
        await asyncio.to_thread(engine.stop)
        ledger.close()
        log.info("stopped%s", " for a restart" if engine.restart_requested else "")


def run(config: Config) -> int:
    """Check everything, take the data folder's lock, then serve. Nothing is created
    (ledger, keys, socket) before the configuration is known to be usable."""
    try:
        check_devices(config)
    except ConfigError as exc:
        print(f"kiosk: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        lock_fd = lock_data_dir(config)
    except (AlreadyRunning, LedgerError) as exc:
        print(f"kiosk: cannot start: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except LedgerError as exc:
        print(f"kiosk: cannot start: {exc}", file=sys.stderr)
        return 2
    finally:
        os.close(lock_fd)
    return 0
