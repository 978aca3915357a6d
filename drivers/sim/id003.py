"""A JCM ID-003 bill acceptor on a pseudo-terminal, with fault injection.

Drivers open the pty (or the `--link` symlink) like any serial port and get real ID-003
bytes back; the device logic is `id003_model.Id003DeviceModel`. Control it with one
command per line on stdin (see `--help`), or in-process:

    sim = Id003Simulator(link=tmp / "ttyID003")
    sim.start()
    sim.command("insert 500")
    sim.wait_for("host acked 0x15 vend valid 500 RUB", timeout_s=5)
    sim.stop()

The same control language and fault set as `kiosk sim ccnet` (drivers/sim/ccnet.py; both
are `pty_device.PtyDeviceSimulator`), with ID-003 names where they differ
(`repeat_vend_valid`, alias `repeat_stacked`; `jam [acceptor|stacker]`; `power_cycle
acceptor`, alias `validator`). Every event is one line ("vend valid 500 RUB (cassette 1
bills, 500 RUB)") printed to stdout in CLI mode and kept in `sim.events` for tests.
`sim.counters` is the ground truth of the cassette. `sim.when("vend valid 500",
"corrupt_crc")` aims a line fault at exactly the reply that follows an event. Line faults
(corrupt_crc, drop_reply, garbage, unplug) live in the shared simulator; device faults
live in the model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.id003.currency import COUNTRY_CURRENCY, CURRENCY_COUNTRY, CurrencyRecord
from drivers.id003.frame import FrameDecoder, build_frame
from drivers.id003.protocol import SYNC, ReplyCode
from drivers.id003.states import DENOMINATION_CODES, FailureCode, RejectReason, Status
from drivers.sim import pty_device
from drivers.sim.id003_model import (
    DEFAULT_BILLS,
    DEFAULT_CURRENCY,
    DEFAULT_VERSION,
    Counters,
    Id003DeviceModel,
    PowerCycle,
    SimTiming,
)
from drivers.sim.pty_device import (
    INSERT,
    LINE_FAULTS,
    NOISE_LNG,
    SESSION,
    ControlCommand,
    PtyDeviceSimulator,
    SimError,
    busy_command,
    count,
    fault_command,
    model_command,
    parse_code,
)

__all__ = ["COMMANDS", "Id003Simulator", "SimError", "commands_help", "main", "parse_bills"]

_REJECT_NAMES = {r.name.lower(): r.value for r in RejectReason}
_FAILURE_NAMES = {f.name.lower(): f.value for f in FailureCode}
_CODE_EXAMPLE = "0x79"
_BYTE_MAX = 0xFF
_JAMS = {"acceptor": Status.JAM_IN_ACCEPTOR, "stacker": Status.JAM_IN_STACKER}


def _cmd_reject(sim: Id003Simulator, args: list[str]) -> str:
    code = (_parse_code(args[0], _REJECT_NAMES, "reject reason") if args
            else RejectReason.DISCRIMINATION)
    return sim.with_model(lambda m: m.reject(code))


def _cmd_jam(sim: Id003Simulator, args: list[str]) -> str:
    where = args[0] if args else "acceptor"
    if where not in _JAMS:
        raise SimError("usage: jam [acceptor|stacker]")
    return sim.with_model(lambda m: m.set_fault(_JAMS[where]))


def _cmd_failure(sim: Id003Simulator, args: list[str]) -> str:
    code = (
        _parse_code(args[0], _FAILURE_NAMES, "failure code") if args else FailureCode.STACK_MOTOR
    )
    if not 0 <= code <= _BYTE_MAX:
        raise SimError(f"failure code must be one byte, got {code}")
    return sim.with_model(lambda m: m.set_fault(Status.FAILURE, bytes((code,))))


def _cmd_power_cycle(sim: Id003Simulator, args: list[str]) -> str:
    try:
        where = PowerCycle.parse(args[0]) if args else PowerCycle.AUTO
    except ValueError:
        raise SimError("usage: power_cycle [acceptor|stacker|none]") from None
    return sim.with_model(lambda m: m.power_cycle(where))


def _cmd_repeat(sim: Id003Simulator, args: list[str]) -> str:
    return sim.with_model(lambda m: m.repeat_vend_valid(count(args)))


def _parse_code(text: str, names: dict[str, int], what: str) -> int:
    return parse_code(text, names, what, _CODE_EXAMPLE)


COMMANDS: tuple[ControlCommand, ...] = (
    INSERT,
    ControlCommand("reject", "[reason]", "customer inserts a bill that is rejected "
                   "(code 0x72 or name: " + ", ".join(sorted(_REJECT_NAMES)) + ")", _cmd_reject),
    ControlCommand("jam", "[acceptor|stacker]",
                   "jam in acceptor (0x45, default) or in stacker (0x46) until clear", _cmd_jam),
    fault_command("cassette_full", "stacker full (0x43) until clear",
                   Status.STACKER_FULL),
    fault_command("cassette_out", "stacker open, cash box removed (0x44) until cassette_in",
                   Status.STACKER_OPEN),
    model_command("cassette_in", "put the cash box back", lambda m: m.cassette_in()),
    fault_command("cheated", "cheated (0x48) until clear or RESET", Status.CHEATED),
    fault_command("pause", "pause (0x47) until RESET or clear", Status.PAUSE),
    ControlCommand("failure", "[code]", "failure (0x49) with a code (0xA2 or name: "
                   + ", ".join(sorted(_FAILURE_NAMES)) + ")", _cmd_failure),
    busy_command("the unit re-initializes (0x1B) for units x 100 ms (default 10); ID-003 "
                 "has no Busy status"),
    ControlCommand("power_cycle", "[acceptor|stacker|none]",
                   "power loss and back; a bill in the acceptor (0x41) is returned by RESET, "
                   "one in the stacker (0x42) is reported VEND VALID again after RESET when "
                   "power recovery is on (else stacked silently); 'validator' = acceptor",
                   _cmd_power_cycle),
    *LINE_FAULTS,
    ControlCommand("repeat_vend_valid", "[n]", "ignore the host's ACK of the next VEND VALID n "
                   "times (default 1): a lost ACK, VEND VALID is reported again", _cmd_repeat),
    ControlCommand("repeat_stacked", "[n]", "the same as repeat_vend_valid (the CCNET "
                   "simulator's name)", _cmd_repeat),
    *SESSION,
)


def commands_help() -> str:
    return Id003Simulator.commands_help()


class Id003Simulator(PtyDeviceSimulator[Id003DeviceModel]):
    """The simulated acceptor on a pty, served by one thread. Thread-safe control."""

    NAME = "id003"
    COMMANDS = COMMANDS
    FRAME_DECODER = FrameDecoder
    BUILD_FRAME = build_frame
    NOISE_HEAD = bytes((SYNC, NOISE_LNG))
    """SYNC and a long LNG."""

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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(link=link, echo=echo, seed=seed, clock=clock)
        self.model = Id003DeviceModel(
            records,
            version=version,
            timing=timing,
            power_recovery_supported=power_recovery_supported,
            vend_valid_data=vend_valid_data,
            emit=self._emit,
            clock=clock.monotonic,
            enq=self._send_enq,
        )

    @property
    def counters(self) -> Counters:
        return self.model.counters

    def _send_enq(self) -> None:
        """Interrupt mode: ENQ on the line, unasked (called by the model under our lock)."""
        self._send(build_frame(ReplyCode.ENQ, b""))

    def _on_bad_crc(self) -> None:
        # [U] what a unit answers to a damaged frame: COMMUNICATION ERROR (0x4A)
        self.model.counters.comm_errors += 1
        self._emit("bad CRC from host, communication error")
        self._send(build_frame(ReplyCode.COMMUNICATION_ERROR))


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
    parser = pty_device.cli_parser(
        "kiosk sim id003",
        "Simulated JCM ID-003 bill acceptor (UBA, iVIZION) on a pseudo-terminal. "
        "Reads control commands from stdin, one per line; prints one line per event.",
        COMMANDS,
    )
    parser.add_argument("--bills", default=default,
                        help=f"currency table, e.g. '10,50,100' or '0x61=10,0x64=500' "
                        f"(default {default})")
    parser.add_argument("--currency", default=DEFAULT_CURRENCY,
                        help=f"ISO 4217 code of the table, one of "
                        f"{', '.join(sorted(set(COUNTRY_CURRENCY.values())))}")
    parser.add_argument("--version-string", default=DEFAULT_VERSION, dest="version",
                        help=f"VERSION REQUEST answer (default {DEFAULT_VERSION!r}; an "
                        "iVIZION answers 'i(...)...')")
    pty_device.add_timing_arguments(parser, "escrow auto-return time (about 10 s)")
    parser.add_argument("--no-power-recovery", action="store_true",
                        help="firmware without power recovery: a bill in the stacker at "
                        "power-up is stacked silently")
    parser.add_argument("--vend-valid-data", action="store_true",
                        help="VEND VALID carries the escrow code (some firmware) [U]")
    pty_device.add_exit_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        records = parse_bills(args.bills, args.currency)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    timing = SimTiming(**pty_device.timing_kwargs(args))
    sim = Id003Simulator(records, version=args.version, link=args.link, timing=timing,
                         power_recovery_supported=not args.no_power_recovery,
                         vend_valid_data=args.vend_valid_data, echo=pty_device.echo_line)

    def banner() -> str:
        return f"id003 simulator {args.version!r} on {sim.path}"

    return pty_device.run_cli(sim, banner, args.exit_on_eof)


if __name__ == "__main__":
    sys.exit(main())
