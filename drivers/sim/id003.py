"""A JCM ID-003 bill acceptor on a pseudo-terminal, with fault injection.

Drivers open the pty (or the `--link` symlink) like any serial port and get real ID-003
bytes back; the device logic is `id003_model.Id003DeviceModel`. Control it with one
command per line on stdin (see `--help`), or in-process:

    sim = Id003Simulator(link=tmp / "ttyID003")
    sim.start()
    sim.command("insert 500")
    sim.wait_for("host acked 0x15 vend valid 500 RUB", timeout_s=5)
    sim.stop()

The same control language and fault set as `kiosk sim ccnet` (drivers/sim/ccnet.py), with
ID-003 names where they differ (`repeat_vend_valid`, alias `repeat_stacked`; `jam
[acceptor|stacker]`; `power_cycle acceptor`, alias `validator`). Every event is one line
("vend valid 500 RUB (cassette 1 bills, 500 RUB)") printed to stdout in CLI mode and kept
in `sim.events` for tests. `sim.counters` is the ground truth of the cassette.
`sim.when("vend valid 500", "corrupt_crc")` aims a line fault at exactly the reply that
follows an event. Line faults (corrupt_crc, drop_reply, garbage, unplug) live here;
device faults live in the model.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers.id003.currency import COUNTRY_CURRENCY, CURRENCY_COUNTRY, CurrencyRecord
from drivers.id003.frame import Decoded, Discarded, DiscardReason, FrameDecoder, build_frame
from drivers.id003.protocol import SYNC, ReplyCode
from drivers.id003.states import DENOMINATION_CODES, FailureCode, RejectReason, Status
from drivers.sim.id003_model import (
    DEFAULT_BILLS,
    DEFAULT_CURRENCY,
    DEFAULT_VERSION,
    Counters,
    Id003DeviceModel,
    PowerCycle,
    SimTiming,
)
from drivers.transport import PseudoTerminal, open_pty

TICK_S = 0.005
"""How often timed transitions are checked while the line is quiet."""
READ_CHUNK = 4096
EVENT_HISTORY = 10_000
DEFAULT_GARBAGE_LEN = 8
NOISE_LNG = 0x40
"""The LNG byte of injected noise: long enough that a naive decoder waits for bytes that
never come, which is exactly what resynchronisation must survive."""
_MS = 1000.0
_FLIP = 0xFF


class _Terminate(Exception):
    """SIGTERM in CLI mode: unwind out of a blocking stdin read."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise _Terminate


class SimError(ValueError):
    """A control command that cannot be executed (bad syntax, unknown name)."""


@dataclass(frozen=True)
class ControlCommand:
    name: str
    args: str
    help: str
    run: Callable[[Id003Simulator, list[str]], str]


def _parse_code(text: str, names: dict[str, int], what: str) -> int:
    key = text.lower().replace("-", "_")
    if key in names:
        return names[key]
    try:
        return int(text, 0)
    except ValueError:
        raise SimError(f"unknown {what} {text!r}; use a code (0x79) or one of "
                       f"{', '.join(sorted(names))}") from None


def _count(args: list[str], default: int = 1) -> int:
    if not args:
        return default
    try:
        value = int(args[0], 0)
    except ValueError:
        raise SimError(f"expected a number, got {args[0]!r}") from None
    if value < 0:
        raise SimError(f"expected a non-negative number, got {value}")
    return value


_REJECT_NAMES = {r.name.lower(): r.value for r in RejectReason}
_FAILURE_NAMES = {f.name.lower(): f.value for f in FailureCode}
_MAX_BUSY_UNITS = 0xFF
_JAMS = {"acceptor": Status.JAM_IN_ACCEPTOR, "stacker": Status.JAM_IN_STACKER}


def _cmd_insert(sim: Id003Simulator, args: list[str]) -> str:
    if len(args) != 1:
        raise SimError("usage: insert <value>, e.g. insert 500")
    return sim.with_model(lambda m: m.insert(_count(args)))


def _cmd_reject(sim: Id003Simulator, args: list[str]) -> str:
    code = (_parse_code(args[0], _REJECT_NAMES, "reject reason") if args
            else RejectReason.DISCRIMINATION)
    return sim.with_model(lambda m: m.reject(code))


def _cmd_jam(sim: Id003Simulator, args: list[str]) -> str:
    where = args[0] if args else "acceptor"
    if where not in _JAMS:
        raise SimError("usage: jam [acceptor|stacker]")
    return sim.with_model(lambda m: m.set_fault(_JAMS[where]))


def _fault(state: Status) -> Callable[[Id003Simulator, list[str]], str]:
    return lambda sim, _args: sim.with_model(lambda m: m.set_fault(state))


def _cmd_failure(sim: Id003Simulator, args: list[str]) -> str:
    code = (
        _parse_code(args[0], _FAILURE_NAMES, "failure code") if args else FailureCode.STACK_MOTOR
    )
    if not 0 <= code <= 0xFF:
        raise SimError(f"failure code must be one byte, got {code}")
    return sim.with_model(lambda m: m.set_fault(Status.FAILURE, bytes((code,))))


def _cmd_busy(sim: Id003Simulator, args: list[str]) -> str:
    units = _count(args, 10)
    if units > _MAX_BUSY_UNITS:
        raise SimError(f"busy takes 0..{_MAX_BUSY_UNITS} units of 100 ms")
    return sim.with_model(lambda m: m.busy(units))


def _cmd_power_cycle(sim: Id003Simulator, args: list[str]) -> str:
    try:
        where = PowerCycle.parse(args[0]) if args else PowerCycle.AUTO
    except ValueError:
        raise SimError("usage: power_cycle [acceptor|stacker|none]") from None
    return sim.with_model(lambda m: m.power_cycle(where))


def _cmd_repeat(sim: Id003Simulator, args: list[str]) -> str:
    return sim.with_model(lambda m: m.repeat_vend_valid(_count(args)))


def _cmd_sleep(_sim: Id003Simulator, args: list[str]) -> str:
    try:
        time.sleep(float(args[0]) if args else 1.0)
    except ValueError:
        raise SimError("usage: sleep <seconds>") from None
    return ""


COMMANDS: tuple[ControlCommand, ...] = (
    ControlCommand("insert", "<value>", "customer inserts a bill (e.g. insert 500)", _cmd_insert),
    ControlCommand("reject", "[reason]", "customer inserts a bill that is rejected "
                   "(code 0x72 or name: " + ", ".join(sorted(_REJECT_NAMES)) + ")", _cmd_reject),
    ControlCommand("jam", "[acceptor|stacker]",
                   "jam in acceptor (0x45, default) or in stacker (0x46) until clear", _cmd_jam),
    ControlCommand("cassette_full", "", "stacker full (0x43) until clear",
                   _fault(Status.STACKER_FULL)),
    ControlCommand("cassette_out", "", "stacker open, cash box removed (0x44) until cassette_in",
                   _fault(Status.STACKER_OPEN)),
    ControlCommand("cassette_in", "", "put the cash box back",
                   lambda sim, _a: sim.with_model(lambda m: m.cassette_in())),
    ControlCommand("cheated", "", "cheated (0x48) until clear or RESET", _fault(Status.CHEATED)),
    ControlCommand("pause", "", "pause (0x47) until RESET or clear", _fault(Status.PAUSE)),
    ControlCommand("failure", "[code]", "failure (0x49) with a code (0xA2 or name: "
                   + ", ".join(sorted(_FAILURE_NAMES)) + ")", _cmd_failure),
    ControlCommand("busy", "[units]", "the unit re-initializes (0x1B) for units x 100 ms "
                   "(default 10); ID-003 has no Busy status", _cmd_busy),
    ControlCommand("power_cycle", "[acceptor|stacker|none]",
                   "power loss and back; a bill in the acceptor (0x41) is returned by RESET, "
                   "one in the stacker (0x42) is reported VEND VALID again after RESET when "
                   "power recovery is on (else stacked silently); 'validator' = acceptor",
                   _cmd_power_cycle),
    ControlCommand("corrupt_crc", "[n]", "corrupt the CRC of the next n replies (default 1)",
                   lambda sim, a: sim.arm("corrupt", _count(a))),
    ControlCommand("drop_reply", "[n]", "do not send the next n replies (default 1)",
                   lambda sim, a: sim.arm("drop", _count(a))),
    ControlCommand("garbage", "[n]", "put n noise bytes (with stray SYNCs) before the next reply",
                   lambda sim, a: sim.arm("garbage", _count(a, DEFAULT_GARBAGE_LEN))),
    ControlCommand("repeat_vend_valid", "[n]", "ignore the host's ACK of the next VEND VALID n "
                   "times (default 1): a lost ACK, VEND VALID is reported again", _cmd_repeat),
    ControlCommand("repeat_stacked", "[n]", "the same as repeat_vend_valid (the CCNET "
                   "simulator's name)", _cmd_repeat),
    ControlCommand("clear", "", "clear any fault; a bill stuck in the path is removed by hand",
                   lambda sim, _a: sim.with_model(lambda m: m.clear())),
    ControlCommand("unplug", "", "close the pty (the host sees the port vanish)",
                   lambda sim, _a: sim.unplug()),
    ControlCommand("replug", "", "open a new pty behind the same --link path",
                   lambda sim, _a: sim.replug()),
    ControlCommand("status", "", "print the state and the counters",
                   lambda sim, _a: sim.with_model(lambda m: m.status_line())),
    ControlCommand("sleep", "[seconds]", "pause the command script", _cmd_sleep),
    ControlCommand("help", "", "list the commands", lambda _sim, _a: commands_help()),
    ControlCommand("quit", "", "stop the simulator", lambda sim, _a: "bye"),
)
_BY_NAME = {c.name: c for c in COMMANDS}


def commands_help() -> str:
    width = max(len(f"{c.name} {c.args}") for c in COMMANDS)
    return "\n".join(f"  {f'{c.name} {c.args}'.ljust(width)}  {c.help}" for c in COMMANDS)


class Id003Simulator:
    """The simulated acceptor on a pty, served by one thread. Thread-safe control."""

    def __init__(
        self,
        records: Sequence[CurrencyRecord] | None = None,
        *,
        version: str = DEFAULT_VERSION,
        link: Path | None = None,
        timing: SimTiming | None = None,
        power_recovery_supported: bool = True,
        vend_valid_data: bool = False,
        echo: Callable[[str], None] | None = None,
        seed: int = 0,
    ) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._events: collections.deque[str] = collections.deque(maxlen=EVENT_HISTORY)
        self._event_count = 0
        self._echo = echo
        self.model = Id003DeviceModel(
            records,
            version=version,
            timing=timing,
            power_recovery_supported=power_recovery_supported,
            vend_valid_data=vend_valid_data,
            emit=self._emit,
        )
        self._link = link
        self._pty: PseudoTerminal | None = None
        self._decoder = FrameDecoder()
        self._armed = {"corrupt": 0, "drop": 0, "garbage": 0}
        self._rng = random.Random(seed)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._triggers: list[tuple[str, str]] = []

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def path(self) -> str:
        """What a driver opens: the --link symlink if there is one, else the pty itself."""
        if self._link is not None:
            return str(self._link)
        if self._pty is None:
            raise RuntimeError("simulator not started")
        return self._pty.path

    @property
    def counters(self) -> Counters:
        return self.model.counters

    def start(self) -> Id003Simulator:
        with self._lock:
            self._pty = self._open_pty()
        self._emit(f"power up ({self.model.reported()[0]:#04x}) on {self._pty.path}")
        self._thread = threading.Thread(target=self._serve, name="id003-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            if self._pty is not None:
                self._pty.close()
                self._pty = None

    def __enter__(self) -> Id003Simulator:
        return self.start() if self._thread is None else self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def unplug(self) -> str:
        with self._lock:
            if self._pty is None:
                return "already unplugged"
            self._pty.close()
            self._pty = None
            self._decoder = FrameDecoder()
        self._emit("unplugged")
        return "ok"

    def replug(self) -> str:
        with self._lock:
            if self._pty is not None:
                return "already plugged in"
            self._pty = self._open_pty()
            path = self._pty.path
        self._emit(f"plugged in on {path}")
        return "ok"

    def _open_pty(self) -> PseudoTerminal:
        pty = open_pty(self._link)
        os.set_blocking(pty.master_fd, False)  # never block on a host that stopped reading
        return pty

    # -- control -------------------------------------------------------------------------

    def command(self, line: str) -> str:
        """Execute one control line; returns the answer text (errors start with "error:")."""
        words = line.split()
        if not words or words[0].startswith("#"):
            return ""
        spec = _BY_NAME.get(words[0].lower())
        if spec is None:
            return f"error: unknown command {words[0]!r} (try help)"
        try:
            return spec.run(self, words[1:])
        except SimError as exc:
            return f"error: {exc}"

    def with_model(self, action: Callable[[Id003DeviceModel], str]) -> str:
        with self._lock:
            return action(self.model)

    def arm(self, what: str, count: int) -> str:
        with self._lock:
            self._armed[what] += count
        return "ok"

    @property
    def events(self) -> list[str]:
        with self._lock:
            return list(self._events)

    def mark(self) -> int:
        """Position in the event stream, for `wait_for(..., since=mark)`."""
        with self._lock:
            return self._event_count

    def wait_for(self, text: str, timeout_s: float = 5.0, since: int = 0) -> str:
        """The first event line containing `text` after event number `since`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                first = self._event_count - len(self._events)
                for i, line in enumerate(self._events):
                    if first + i >= since and text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no simulator event {text!r} within {timeout_s} s; "
                                       f"last events: {list(self._events)[-8:]}")
                self._changed.wait(remaining)

    def when(self, text: str, command_line: str) -> None:
        """Run `command_line` the moment an event containing `text` happens (once).

        It runs in the simulator thread before the next reply is sent, so a test can
        corrupt or drop exactly the reply that carries, say, VEND VALID.
        """
        with self._lock:
            self._triggers.append((text, command_line))

    def _emit(self, line: str) -> None:
        with self._changed:
            self._events.append(line)
            self._event_count += 1
            self._changed.notify_all()
            fired = [t for t in self._triggers if t[0] in line]
            for trigger in fired:
                self._triggers.remove(trigger)
        if self._echo is not None:
            self._echo(line)
        for _text, command_line in fired:
            self.command(command_line)

    # -- the line ------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                fd = self._pty.master_fd if self._pty is not None else None
            if fd is None:
                self._stopping.wait(TICK_S)
                with self._lock:
                    self.model.tick()  # bills keep moving while the cable is out
                continue
            try:
                ready, _, _ = select.select([fd], [], [], TICK_S)
            except (OSError, ValueError):
                ready = []  # unplugged under us; the next loop sees it
            with self._lock:
                # Read only under the lock and only from the current pty: a closed fd
                # number may already belong to something else in this process.
                if ready and self._pty is not None and self._pty.master_fd == fd:
                    try:
                        data = os.read(fd, READ_CHUNK)
                    except OSError:
                        data = b""
                    for item in self._decoder.feed(data):
                        self._on_frame(item)
                self.model.tick()

    def _on_frame(self, item: Decoded) -> None:
        if isinstance(item, Discarded):
            if item.reason is DiscardReason.BAD_CRC:
                # [U] what a unit answers to a damaged frame: COMMUNICATION ERROR (0x4A)
                self.model.counters.comm_errors += 1
                self._emit("bad CRC from host, communication error")
                self._send(build_frame(ReplyCode.COMMUNICATION_ERROR))
            return
        reply = self.model.handle(item.payload)
        if reply is None:
            return
        out = build_frame(reply[0], reply[1:])
        if self._armed["drop"]:
            self._armed["drop"] -= 1
            self._emit("reply dropped")
            return
        if self._armed["corrupt"]:
            self._armed["corrupt"] -= 1
            out = out[:-1] + bytes((out[-1] ^ _FLIP,))
            self._emit("reply CRC corrupted")
        if self._armed["garbage"]:
            noise = self._noise(self._armed["garbage"])
            self._armed["garbage"] = 0
            out = noise + out
            self._emit(f"garbage before reply: {noise.hex(' ')}")
        self._send(out)

    def _noise(self, length: int) -> bytes:
        """Noise that looks like the start of a frame: SYNC and a long LNG."""
        head = bytes((SYNC, NOISE_LNG))
        tail = bytes(self._rng.randrange(0x100) for _ in range(max(0, length - len(head))))
        return (head + tail)[: max(length, 1)]

    def _send(self, data: bytes) -> None:
        if self._pty is None:
            return
        try:
            os.write(self._pty.master_fd, data)
        except OSError:
            pass  # nobody reading and the buffer is full, or unplugged: a real line loses it


# -- command line ----------------------------------------------------------------------


def parse_bills(text: str, currency: str) -> list[CurrencyRecord]:
    """"10,50,100" (escrow codes 0x61, 0x62, 0x63) or "0x61=10,0x64=500"; 0 or - leaves a
    code unassigned."""
    country = CURRENCY_COUNTRY.get(currency)
    if country is None:
        raise argparse.ArgumentTypeError(
            f"unknown currency {currency!r}; one of {', '.join(sorted(CURRENCY_COUNTRY))}")
    records = []
    for i, item in enumerate(x.strip() for x in text.split(",")):
        if not item:
            continue
        code_text, _, value = item.rpartition("=")
        try:
            code = int(code_text, 0) if code_text else DENOMINATION_CODES[i]
            if code not in DENOMINATION_CODES:
                raise ValueError(f"escrow code must be 0x61..0x68, got {code:#x}")
            v = 0 if value in ("", "-") else int(value)
            if v:
                records.append(CurrencyRecord.for_value(code, v, country))
        except (ValueError, IndexError) as exc:
            raise argparse.ArgumentTypeError(f"bad bill entry {item!r}: {exc}") from None
    return records


def _parser() -> argparse.ArgumentParser:
    default = ",".join(f"{c:#04x}={v}" for c, v in DEFAULT_BILLS)
    parser = argparse.ArgumentParser(
        prog="kiosk sim id003",
        description="Simulated JCM ID-003 bill acceptor (UBA, iVIZION) on a pseudo-terminal. "
        "Reads control commands from stdin, one per line; prints one line per event.",
        epilog="commands:\n" + commands_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--link", type=Path, help="create this symlink to the pty")
    parser.add_argument("--bills", default=default,
                        help=f"currency table, e.g. '10,50,100' or '0x61=10,0x64=500' "
                        f"(default {default})")
    parser.add_argument("--currency", default=DEFAULT_CURRENCY,
                        help=f"ISO 4217 code of the table, one of "
                        f"{', '.join(sorted(set(COUNTRY_CURRENCY.values())))}")
    parser.add_argument("--version-string", default=DEFAULT_VERSION, dest="version",
                        help=f"VERSION REQUEST answer (default {DEFAULT_VERSION!r}; an "
                        "iVIZION answers 'i(...)...')")
    parser.add_argument("--init-ms", type=int, default=200, help="initialization time")
    parser.add_argument("--accept-ms", type=int, default=100, help="scan time of a bill")
    parser.add_argument("--stack-ms", type=int, default=100, help="stacking time")
    parser.add_argument("--escrow-timeout-s", type=float, default=10.0,
                        help="escrow auto-return time (§2: about 10 s)")
    parser.add_argument("--no-power-recovery", action="store_true",
                        help="firmware without power recovery: a bill in the stacker at "
                        "power-up is stacked silently")
    parser.add_argument("--vend-valid-data", action="store_true",
                        help="VEND VALID carries the escrow code (some firmware) [U]")
    parser.add_argument("--exit-on-eof", action="store_true",
                        help="quit when stdin ends (default: keep serving until a signal)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        records = parse_bills(args.bills, args.currency)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    timing = SimTiming(
        init_s=args.init_ms / _MS,
        accept_s=args.accept_ms / _MS,
        stack_s=args.stack_ms / _MS,
        return_s=args.stack_ms / _MS,
        escrow_timeout_s=args.escrow_timeout_s,
    )

    def echo(line: str) -> None:
        print(line, flush=True)

    sim = Id003Simulator(records, version=args.version, link=args.link, timing=timing,
                         power_recovery_supported=not args.no_power_recovery,
                         vend_valid_data=args.vend_valid_data, echo=echo)
    done = threading.Event()
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        pass  # not the main thread (called from a test): no signal handling needed
    sim.start()
    print(f"id003 simulator {args.version!r} on {sim.path}", flush=True)
    try:
        for line in sys.stdin:
            if done.is_set():
                break
            answer = sim.command(line)
            if answer:
                print(answer, flush=True)
            if line.split()[:1] == ["quit"]:
                done.set()
                break
        if not done.is_set() and not args.exit_on_eof:
            done.wait()
    except (KeyboardInterrupt, _Terminate):
        pass
    finally:
        sim.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
