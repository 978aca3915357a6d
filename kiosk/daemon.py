"""`kiosk run`: the core daemon. Owns the ledger, the devices and the local API socket."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time

from kiosk.api_server import ApiServer
from kiosk.config import Config
from kiosk.devices import build_acceptor, build_printer
from kiosk.engine import PaymentEngine
from kiosk.ledger import Ledger, LedgerError
from kiosk.sdnotify import Notifier

log = logging.getLogger("kiosk.daemon")

TICK_S = 0.1
# Fault injection for the watchdog test: while this file exists the main loop stalls, as
# a loop stuck on a lock or a hung device would.
STALL_ENV = "KIOSK_FAULT_STALL_FILE"


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


async def serve(config: Config, ready: asyncio.Event | None = None) -> None:
    started = time.monotonic()
    ledger = Ledger(config.paths.ledger, config.terminal.id)
    ledger.open()
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

        agent = SyncAgent(config, engine, ledger)
        agent.start()
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
    try:
        asyncio.run(serve(config))
    except LedgerError as exc:
        print(f"kiosk: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0
