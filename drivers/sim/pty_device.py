"""A simulated bill acceptor on a pseudo-terminal, whatever its protocol.

`PtyDeviceSimulator` is what the CCNET and ID-003 simulators (drivers/sim/ccnet.py,
drivers/sim/id003.py) have in common: the pty (or the `--link` symlink to it) served by
one thread, decoding host frames and sending the device model's replies; line faults
(corrupt_crc, drop_reply, garbage, unplug/replug) applied to those replies; the event
log with `wait_for`/`mark`/`when` for tests; and the control language, one command per
line, shared where the two devices mean the same thing. A protocol supplies its model
(`SimModel`: the device logic and its faults), its frame decoder and framing, what it
answers to a damaged host frame, and its own control commands.

Instead of a pty, a simulator can serve an in-memory line (`memory_port`): the driver
gets it through its `PortOpener`, and with a shared `drivers.clock.ManualClock` the
whole exchange runs in virtual time, without a serving thread or real sleeps.

The command-line part (`cli_parser`, `run_cli`) reads control commands from stdin and
prints one line per event, for `kiosk sim <protocol>`.
"""

from __future__ import annotations

import abc
import argparse
import collections
import os
import random
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.framing import Discarded, DiscardReason, StreamDecoder
from drivers.sim.stop_signal import Terminated, stop_on_sigterm, wait_for_stop
from drivers.transport import PseudoTerminal, open_pty

TICK_S = 0.005
"""How often timed transitions are checked while the line is quiet."""
READ_CHUNK = 4096
EVENT_HISTORY = 10_000
DEFAULT_GARBAGE_LEN = 8
NOISE_LNG = 0x40
"""The LNG byte of injected noise: long enough that a naive decoder waits for bytes that
never come, which is exactly what resynchronisation must survive."""
STOP_JOIN_S = 5.0
MAX_BUSY_UNITS = 0xFF
"""Busy time is one byte of 100 ms units on both protocols."""
DEFAULT_BUSY_UNITS = 10
DEFAULT_SLEEP_S = 1.0
DEFAULT_LATE_MS = 500
"""How late `late_reply` sends by default: past the host timeouts of the shipped profiles."""
LAST_EVENTS_SHOWN = 8
MEMORY_READ_TIMEOUT_S = 0.01
"""A memory line's read timeout: the drivers' port read granularity."""
_MS = 1000.0
_FLIP = 0xFF


class SimError(ValueError):
    """A control command that cannot be executed (bad syntax, unknown name)."""


class SimModel(Protocol):
    """What the pty side needs of a protocol's device model."""

    @property
    def counters(self) -> Any: ...

    def handle(self, payload: bytes) -> bytes | None: ...

    def tick(self) -> None: ...

    def reported(self) -> tuple[int, Any]: ...


ModelT = TypeVar("ModelT", bound=SimModel)
SimT = TypeVar("SimT", bound="PtyDeviceSimulator[Any]")
FrameT = TypeVar("FrameT")


@dataclass(frozen=True)
class ControlCommand:
    name: str
    args: str
    help: str
    run: Callable[[Any, list[str]], str]


# -- the control language ---------------------------------------------------------------


def parse_code(text: str, names: dict[str, int], what: str, example: str) -> int:
    """A code by name ("optic") or number ("0x67"); `example` is shown in the error."""
    key = text.lower().replace("-", "_")
    if key in names:
        return names[key]
    try:
        return int(text, 0)
    except ValueError:
        raise SimError(f"unknown {what} {text!r}; use a code ({example}) or one of "
                       f"{', '.join(sorted(names))}") from None


def count(args: list[str], default: int = 1) -> int:
    """The first argument as a non-negative number, `default` without one."""
    if not args:
        return default
    try:
        value = int(args[0], 0)
    except ValueError:
        raise SimError(f"expected a number, got {args[0]!r}") from None
    if value < 0:
        raise SimError(f"expected a non-negative number, got {value}")
    return value


def _cmd_insert(sim: PtyDeviceSimulator[Any], args: list[str]) -> str:
    if len(args) != 1:
        raise SimError("usage: insert <value>, e.g. insert 500")
    return sim.with_model(lambda m: m.insert(count(args)))


def _cmd_busy(sim: PtyDeviceSimulator[Any], args: list[str]) -> str:
    units = count(args, DEFAULT_BUSY_UNITS)
    if units > MAX_BUSY_UNITS:
        raise SimError(f"busy takes 0..{MAX_BUSY_UNITS} units of 100 ms")
    return sim.with_model(lambda m: m.busy(units))


def _cmd_sleep(_sim: PtyDeviceSimulator[Any], args: list[str]) -> str:
    try:
        time.sleep(float(args[0]) if args else DEFAULT_SLEEP_S)
    except ValueError:
        raise SimError("usage: sleep <seconds>") from None
    return ""


INSERT = ControlCommand("insert", "<value>", "customer inserts a bill (e.g. insert 500)",
                        _cmd_insert)


def busy_command(help_text: str) -> ControlCommand:
    return ControlCommand("busy", "[units]", help_text, _cmd_busy)


def model_command(name: str, help_text: str, action: Callable[[Any], str]) -> ControlCommand:
    """A command without arguments that runs `action(model)` under the simulator's lock."""
    return ControlCommand(name, "", help_text, lambda sim, _a: sim.with_model(action))


def fault_command(name: str, help_text: str, state: int) -> ControlCommand:
    """A command without arguments that puts the unit into fault `state` until cleared."""
    return ControlCommand(name, "", help_text,
                          lambda sim, _a: sim.with_model(lambda m: m.set_fault(state)))


def _after(args: list[str]) -> int:
    """The optional second argument of a line fault: replies to let through first."""
    return count(args[1:], 0)


def _cmd_late_reply(sim: PtyDeviceSimulator[Any], args: list[str]) -> str:
    n = count(args)
    delay_ms = count(args[1:], DEFAULT_LATE_MS)
    return sim.arm_late(n, delay_ms / _MS)


def _cmd_nak_mode(sim: PtyDeviceSimulator[Any], args: list[str]) -> str:
    if not args or args[0] not in NAK_MODES:
        raise SimError(f"usage: nak_mode {'|'.join(NAK_MODES)} [delay_ms]")
    return sim.set_nak_mode(args[0], count(args[1:], 0) / _MS)


LINE_FAULTS: tuple[ControlCommand, ...] = (
    ControlCommand("corrupt_crc", "[n] [after]", "corrupt the CRC of the next n replies "
                   "(default 1), after letting `after` replies through (default 0)",
                   lambda sim, a: sim.arm("corrupt", count(a), _after(a))),
    ControlCommand("drop_reply", "[n] [after]", "do not send the next n replies (default 1), "
                   "after letting `after` replies through",
                   lambda sim, a: sim.arm("drop", count(a), _after(a))),
    ControlCommand("garbage", "[n]", "put n noise bytes (with stray SYNCs) before the next reply",
                   lambda sim, a: sim.arm("garbage", count(a, DEFAULT_GARBAGE_LEN))),
    ControlCommand("late_reply", "[n] [ms]", "send the next n replies (default 1) ms late "
                   f"(default {DEFAULT_LATE_MS}: past a host's usual timeout); later replies "
                   "queue behind them, in order, as on a real line", _cmd_late_reply),
)
"""Faults of the line, not the device: applied here to whatever the model replies."""

NAK_MODES = ("silent", "retransmit")
"""What the unit does after the host NAKs its reply (unsettled on real units:
docs/protocols/ccnet.md, "Link rules")."""
NAK_COMMAND = ControlCommand(
    "nak_mode", "silent|retransmit [delay_ms]",
    "after a host NAK: stay silent (default), or retransmit the last reply, delay_ms late "
    "(a delay can land it in the host's gap between frames or past its timeout)",
    _cmd_nak_mode)

SESSION: tuple[ControlCommand, ...] = (
    model_command("clear", "clear any fault; a bill stuck in the path is removed by hand",
                  lambda m: m.clear()),
    ControlCommand("unplug", "", "close the pty (the host sees the port vanish)",
                   lambda sim, _a: sim.unplug()),
    ControlCommand("replug", "", "open a new pty behind the same --link path",
                   lambda sim, _a: sim.replug()),
    model_command("status", "print the state and the counters", lambda m: m.status_line()),
    ControlCommand("sleep", "[seconds]", "pause the command script", _cmd_sleep),
    ControlCommand("help", "", "list the commands", lambda sim, _a: sim.commands_help()),
    ControlCommand("quit", "", "stop the simulator", lambda _sim, _a: "bye"),
)
"""The commands that close every simulator's list."""


def commands_help(commands: Sequence[ControlCommand]) -> str:
    width = max(len(f"{c.name} {c.args}") for c in commands)
    return "\n".join(f"  {f'{c.name} {c.args}'.ljust(width)}  {c.help}" for c in commands)


# -- the simulator ----------------------------------------------------------------------


class PtyDeviceSimulator(abc.ABC, Generic[ModelT]):
    """A simulated unit on a pty, served by one thread. Thread-safe control."""

    NAME: ClassVar[str]
    """Short protocol name, for the serving thread's name."""
    COMMANDS: ClassVar[tuple[ControlCommand, ...]]
    NOISE_HEAD: ClassVar[bytes]
    """How injected noise starts: like a frame of this protocol, with a long LNG."""
    FRAME_DECODER: ClassVar[Callable[[], StreamDecoder[Any]]]
    """The protocol's frame decoder class (a fresh one after an unplug)."""
    BUILD_FRAME: ClassVar[Callable[[int, bytes], bytes]]
    """The protocol's `build_frame(code, data)`. Both are read through the class
    (`type(self).X`), so a plain function stays a function, not a bound method."""

    model: ModelT

    def __init__(self, *, link: Path | None, echo: Callable[[str], None] | None,
                 seed: int, clock: Clock = SYSTEM_CLOCK) -> None:
        """The subclass sets `self.model` (with `emit=self._emit` and
        `clock=clock.monotonic`) right after this."""
        self._clock = clock
        self._memory: bytearray | None = None  # the unit's bytes not yet read (memory line)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._events: collections.deque[str] = collections.deque(maxlen=EVENT_HISTORY)
        self._event_count = 0
        self._echo = echo
        self._link = link
        self._pty: PseudoTerminal | None = None
        self._decoder = type(self).FRAME_DECODER()
        self._armed = {"corrupt": 0, "drop": 0, "garbage": 0}
        self._after = {"corrupt": 0, "drop": 0}  # replies let through before arming bites
        self._late = 0  # replies still to send late
        self._late_s = 0.0
        self.nak_mode = "silent"
        self.nak_delay_s = 0.0
        self._last_reply: bytes | None = None  # clean bytes of the last reply, to retransmit
        self._outbox: collections.deque[tuple[float, bytes]] = collections.deque()
        self._rng = random.Random(seed)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._triggers: list[tuple[str, str]] = []

    # -- what a protocol supplies --------------------------------------------------------

    @abc.abstractmethod
    def _on_bad_crc(self) -> None:
        """What the unit answers to a host frame whose CRC failed."""

    def _for_us(self, frame: Any) -> bool:
        """False for a frame addressed to another peripheral on a shared line."""
        return True

    def _is_host_nak(self, frame: Any) -> bool:
        """True for the host's NAK of our last reply (a protocol without NAK: never)."""
        return False

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
    def counters(self) -> Any:
        return self.model.counters

    def start(self: SimT) -> SimT:
        with self._lock:
            self._pty = self._open_pty()
        self._emit(f"power up ({self.model.reported()[0]:#04x}) on {self._pty.path}")
        self._thread = threading.Thread(target=self._serve, name=f"{self.NAME}-sim",
                                        daemon=True)
        self._thread.start()
        return self

    def memory_port(self, read_timeout_s: float = MEMORY_READ_TIMEOUT_S) -> MemoryPort:
        """A `SerialPort` wired straight to this unit, instead of `start()` and a pty.

        Host frames are handled the moment they are written, in the writer's thread; a
        read that finds nothing waits `read_timeout_s` on the simulator's clock (what a
        real port's read timeout does) and lets timed transitions happen. Line faults,
        NAK modes and late replies work as on the pty. Give the driver
        `opener=lambda url, settings: sim.memory_port()`.
        """
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("simulator already serves a pty")
            if self._memory is None:
                self._memory = bytearray()
                self._emit(f"power up ({self.model.reported()[0]:#04x}) on a memory line")
        return MemoryPort(self, read_timeout_s)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_JOIN_S)
        with self._lock:
            if self._pty is not None:
                self._pty.close()
                self._pty = None

    def __enter__(self: SimT) -> SimT:
        return self.start() if self._thread is None else self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def unplug(self) -> str:
        with self._lock:
            if self._pty is None:
                return "already unplugged"
            self._pty.close()
            self._pty = None
            self._decoder = type(self).FRAME_DECODER()
            self._outbox.clear()  # frames still queued never make it onto the line
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
        name = words[0].lower()
        spec = next((c for c in self.COMMANDS if c.name == name), None)
        if spec is None:
            return f"error: unknown command {words[0]!r} (try help)"
        try:
            return spec.run(self, words[1:])
        except SimError as exc:
            return f"error: {exc}"

    @classmethod
    def commands_help(cls) -> str:
        return commands_help(cls.COMMANDS)

    def with_model(self, action: Callable[[ModelT], Any]) -> Any:
        with self._lock:
            return action(self.model)

    def arm(self, what: str, count: int, after: int = 0) -> str:
        """Apply line fault `what` to `count` replies, after `after` clean ones."""
        with self._lock:
            self._armed[what] += count
            if after:
                self._after[what] = after
        return "ok"

    def arm_late(self, count: int, delay_s: float) -> str:
        """Send the next `count` replies `delay_s` late (a slow unit)."""
        with self._lock:
            self._late, self._late_s = count, delay_s
        return "ok"

    def set_nak_mode(self, mode: str, delay_s: float = 0.0) -> str:
        """After a host NAK: "silent", or "retransmit" the last reply `delay_s` later."""
        if mode not in NAK_MODES:
            raise SimError(f"nak mode must be one of {', '.join(NAK_MODES)}")
        with self._lock:
            self.nak_mode, self.nak_delay_s = mode, delay_s
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
                                       f"last events: {list(self._events)[-LAST_EVENTS_SHOWN:]}")
                self._changed.wait(remaining)

    def when(self, text: str, command_line: str) -> None:
        """Run `command_line` the moment an event containing `text` happens (once).

        It runs in the simulator thread before the next reply is sent, so a test can
        corrupt or drop exactly the reply that carries, say, the credit report.
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
                    self._receive(data)
                self._pump()

    def _receive(self, data: bytes) -> None:
        """Host bytes arrived on the line (under the lock)."""
        for item in self._decoder.feed(data):
            self._on_frame(item)

    def _pump(self) -> None:
        """Let time act: timed transitions, then replies that are due (under the lock)."""
        self.model.tick()
        self._flush_outbox()

    def _on_frame(self, item: Any) -> None:
        if isinstance(item, Discarded):
            if item.reason is DiscardReason.BAD_CRC:
                self._on_bad_crc()
            return
        if not self._for_us(item):
            return
        reply = self.model.handle(item.payload)
        if self._is_host_nak(item):
            self._after_host_nak()
        if reply is None:
            return
        out = type(self).BUILD_FRAME(reply[0], reply[1:])
        self._last_reply = out
        if self._bites("drop"):
            self._emit("reply dropped")
            return
        if self._bites("corrupt"):
            out = out[:-1] + bytes((out[-1] ^ _FLIP,))
            self._emit("reply CRC corrupted")
        if self._armed["garbage"]:
            noise = self._noise(self._armed["garbage"])
            self._armed["garbage"] = 0
            out = noise + out
            self._emit(f"garbage before reply: {noise.hex(' ')}")
        delay = 0.0
        if self._late:
            self._late -= 1
            delay = self._late_s
            self._emit(f"reply late by {delay * _MS:.0f} ms")
        self._queue(out, delay)

    def _bites(self, what: str) -> bool:
        """Whether armed line fault `what` hits this reply (after its clean ones)."""
        if not self._armed[what]:
            return False
        if self._after.get(what):
            self._after[what] -= 1
            return False
        self._armed[what] -= 1
        return True

    def _after_host_nak(self) -> None:
        """The host could not read our last reply: retransmit it, or stay silent."""
        if self.nak_mode != "retransmit" or self._last_reply is None:
            self._emit("host NAK: staying silent")
            return
        self._emit(f"host NAK: retransmitting the last reply in {self.nak_delay_s * _MS:.0f} ms")
        self._queue(self._last_reply, self.nak_delay_s)

    def _queue(self, data: bytes, delay_s: float) -> None:
        """Send `data` after `delay_s`, behind anything still queued: the unit's frames
        leave in the order it made them (a first-in-first-out line)."""
        if delay_s <= 0 and not self._outbox:
            self._send(data)
            return
        due = self._clock.monotonic() + delay_s
        if self._outbox:
            due = max(due, self._outbox[-1][0])
        self._outbox.append((due, data))

    def _flush_outbox(self) -> None:
        now = self._clock.monotonic()
        while self._outbox and self._outbox[0][0] <= now:
            self._send(self._outbox.popleft()[1])

    def _noise(self, length: int) -> bytes:
        """Noise that looks like the start of a frame (`NOISE_HEAD`), then random bytes."""
        head = self.NOISE_HEAD
        tail = bytes(self._rng.randrange(0x100) for _ in range(max(0, length - len(head))))
        return (head + tail)[: max(length, 1)]

    def _send(self, data: bytes) -> None:
        if self._memory is not None:
            self._memory.extend(data)
            return
        if self._pty is None:
            return
        try:
            os.write(self._pty.master_fd, data)
        except OSError:
            pass  # nobody reading and the buffer is full, or unplugged: a real line loses it


class MemoryPort:
    """The host's end of a simulator's in-memory line (see `memory_port`)."""

    def __init__(self, sim: PtyDeviceSimulator[Any], read_timeout_s: float) -> None:
        self._sim = sim
        self._timeout_s = read_timeout_s
        self.is_open = True

    @property
    def in_waiting(self) -> int:
        with self._sim._lock:
            self._check_open()
            self._sim._pump()
            return len(self._line())

    def read(self, size: int = 1) -> bytes:
        with self._sim._lock:
            self._check_open()
            self._sim._pump()
            if not self._line():
                self._sim._clock.sleep(self._timeout_s)  # the port's read timeout
                self._sim._pump()
            line = self._line()
            chunk = bytes(line[:size])
            del line[:size]
            return chunk

    def write(self, data: bytes, /) -> int:
        with self._sim._lock:
            self._check_open()
            self._sim._receive(bytes(data))
            self._sim._pump()
        return len(data)

    def reset_input_buffer(self) -> None:
        with self._sim._lock:
            self._line().clear()

    def close(self) -> None:
        self.is_open = False

    def _line(self) -> bytearray:
        line = self._sim._memory
        if line is None:
            raise OSError("memory line not set up")
        return line

    def _check_open(self) -> None:
        if not self.is_open:
            raise OSError("port closed")


# -- command line ----------------------------------------------------------------------


def cli_parser(prog: str, description: str, commands: Sequence[ControlCommand]
               ) -> argparse.ArgumentParser:
    """The parser of `kiosk sim <protocol>`, with `--link`; the commands as its epilog."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="commands:\n" + commands_help(commands),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--link", type=Path, help="create this symlink to the pty")
    return parser


def add_timing_arguments(parser: argparse.ArgumentParser, escrow_timeout_help: str,
                         accept_s: float = 0.1, accept_help: str = "scan time of a bill"
                         ) -> None:
    accept_ms = round(accept_s * _MS)
    parser.add_argument("--init-ms", type=int, default=200, help="initialization time")
    parser.add_argument("--accept-ms", type=int, default=accept_ms,
                        help=f"{accept_help} (default {accept_ms})")
    parser.add_argument("--stack-ms", type=int, default=100, help="stacking time")
    parser.add_argument("--escrow-timeout-s", type=float, default=10.0,
                        help=escrow_timeout_help)


def add_exit_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exit-on-eof", action="store_true",
                        help="quit when stdin ends (default: keep serving until a signal)")


def timing_kwargs(args: argparse.Namespace) -> dict[str, float]:
    """The `SimTiming` fields the command line sets (both protocols name them alike)."""
    return {
        "init_s": args.init_ms / _MS,
        "accept_s": args.accept_ms / _MS,
        "stack_s": args.stack_ms / _MS,
        "return_s": args.stack_ms / _MS,
        "escrow_timeout_s": args.escrow_timeout_s,
    }


def ms_to_s(ms: int) -> float:
    return ms / _MS


def echo_line(line: str) -> None:
    """Events on stdout, one per line, as they happen."""
    print(line, flush=True)


def run_cli(sim: PtyDeviceSimulator[Any], banner: Callable[[], str], exit_on_eof: bool
            ) -> int:
    """Serve `sim` and execute control commands from stdin until quit, EOF (with
    `exit_on_eof`), Ctrl-C or SIGTERM. `banner` is printed once the pty exists."""
    done = threading.Event()
    with stop_on_sigterm():
        sim.start()
        print(banner(), flush=True)
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
            if not exit_on_eof:
                wait_for_stop(done)
        except (KeyboardInterrupt, Terminated):
            pass
        finally:
            sim.stop()
    return 0
