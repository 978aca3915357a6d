"""A CashCode CCNET bill validator on a pseudo-terminal, with fault injection.

Drivers open the pty (or the `--link` symlink) like any serial port and get real CCNET
bytes back; the device logic is `ccnet_model.CcnetDeviceModel`. Control it with one
command per line on stdin (see `--help`), or in-process:

    sim = CcnetSimulator(link=tmp / "ttyCCNET")
    sim.start()
    sim.command("insert 500")
    sim.wait_for("stacked 500 RUB", timeout_s=5)
    sim.stop()

Every event is one line ("stacked 500 RUB (cassette 1 bills, 500 RUB)") printed to stdout
in CLI mode and kept in `sim.events` for tests. `sim.counters` is the ground truth of
the cassette. `sim.when("stacked", "corrupt_crc")` aims a line fault at exactly the reply
that follows an event. Line faults (corrupt_crc, drop_reply, garbage, unplug) and the
pty, event log and control language are `pty_device.PtyDeviceSimulator`'s; device faults
live in the model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from drivers.ccnet.billtable import BillRecord
from drivers.ccnet.frame import Frame, FrameDecoder, build_frame
from drivers.ccnet.protocol import ASSET_NUMBER_LEN, SYNC, Address, Command, Control
from drivers.ccnet.states import FailureCode, PollState, RejectReason
from drivers.clock import SYSTEM_CLOCK, Clock
from drivers.sim import pty_device
from drivers.sim.ccnet_model import (
    DEFAULT_ACCEPT_S,
    DEFAULT_BILLS,
    DEFAULT_COUNTRY,
    DEFAULT_PART,
    DEFAULT_SERIAL,
    CcnetDeviceModel,
    Counters,
    PowerCycle,
    SimTiming,
)
from drivers.sim.pty_device import (
    INSERT,
    LINE_FAULTS,
    NAK_COMMAND,
    NAK_MODES,
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

__all__ = ["COMMANDS", "CcnetSimulator", "SimError", "commands_help", "main", "parse_bills"]

_REJECT_NAMES = {r.name.lower(): r.value for r in RejectReason}
_FAILURE_NAMES = {f.name.lower(): f.value for f in FailureCode}
_CODE_EXAMPLE = "0x68"


def _cmd_reject(sim: CcnetSimulator, args: list[str]) -> str:
    code = (_parse_code(args[0], _REJECT_NAMES, "reject reason") if args
            else RejectReason.OPTIC)
    return sim.with_model(lambda m: m.reject(code))


def _cmd_failure(sim: CcnetSimulator, args: list[str]) -> str:
    code = (
        _parse_code(args[0], _FAILURE_NAMES, "failure code") if args else FailureCode.STACK_MOTOR
    )
    return sim.with_model(lambda m: m.set_fault(PollState.FAILURE, code))


def _cmd_power_cycle(sim: CcnetSimulator, args: list[str]) -> str:
    usage = "usage: power_cycle [validator|stacker|none|auto] [value]"
    try:
        where = PowerCycle(args[0]) if args else PowerCycle.AUTO
    except ValueError:
        raise SimError(usage) from None
    note = count(args[1:]) if len(args) > 1 else None
    if note is not None and where is not PowerCycle.STACKER:
        raise SimError(usage + " (a value only with stacker)")
    return sim.power_cycle(where, note_in_stacker=note)


def _parse_code(text: str, names: dict[str, int], what: str) -> int:
    return parse_code(text, names, what, _CODE_EXAMPLE)


COMMANDS: tuple[ControlCommand, ...] = (
    INSERT,
    ControlCommand("reject", "[reason]", "customer inserts a bill that is rejected "
                   "(code 0x61 or name: " + ", ".join(sorted(_REJECT_NAMES)) + ")", _cmd_reject),
    fault_command("jam", "validator jammed (0x43) until clear",
                   PollState.VALIDATOR_JAMMED),
    fault_command("cassette_full", "drop cassette full (0x41) until clear",
                   PollState.CASSETTE_FULL),
    fault_command("cassette_out", "drop cassette removed (0x42) until cassette_in",
                   PollState.CASSETTE_OUT),
    model_command("cassette_in", "put the drop cassette back", lambda m: m.cassette_in()),
    fault_command("cheated", "cheated (0x45) until clear or RESET", PollState.CHEATED),
    fault_command("pause", "pause (0x46) until RESET or clear", PollState.PAUSE),
    ControlCommand("failure", "[code]", "generic failure (0x47) with a code (0x50 or name: "
                   + ", ".join(sorted(_FAILURE_NAMES)) + ")", _cmd_failure),
    busy_command("device busy (0x1B) for units x 100 ms (default 10)"),
    ControlCommand("power_cycle", "[validator|stacker|none] [value]",
                   "power loss and back; a bill in the validator (0x11) is returned after "
                   "RESET, one in the stacker (0x12) is reported stacked after RESET; "
                   "'stacker 500' puts a 500 note in the stacker path first, without any "
                   "STACK from the host", _cmd_power_cycle),
    *LINE_FAULTS,
    NAK_COMMAND,
    ControlCommand("repeat_stacked", "[n]", "ignore the host's ACK of the next stacked report "
                   "n times (default 1): stacked is reported again",
                   lambda sim, a: sim.with_model(lambda m: m.repeat_stacked(count(a)))),
    *SESSION,
)


def commands_help() -> str:
    return CcnetSimulator.commands_help()


class CcnetSimulator(PtyDeviceSimulator[CcnetDeviceModel]):
    """The simulated validator on a pty, served by one thread. Thread-safe control."""

    NAME = "ccnet"
    COMMANDS = COMMANDS
    FRAME_DECODER = FrameDecoder
    BUILD_FRAME = build_frame
    NOISE_HEAD = bytes((SYNC, Address.BILL_VALIDATOR, NOISE_LNG))
    """SYNC, our address and a long LNG."""

    def __init__(
        self,
        records: Sequence[BillRecord] | None = None,
        *,
        part_number: str = DEFAULT_PART,
        serial_number: str = DEFAULT_SERIAL,
        asset_number: bytes = bytes(ASSET_NUMBER_LEN),
        link: Path | None = None,
        timing: SimTiming | None = None,
        echo: Callable[[str], None] | None = None,
        seed: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(link=link, echo=echo, seed=seed, clock=clock)
        self.model = CcnetDeviceModel(
            records,
            part_number=part_number,
            serial_number=serial_number,
            asset_number=asset_number,
            timing=timing,
            emit=self._emit,
            clock=clock.monotonic,
        )

    @property
    def counters(self) -> Counters:
        return self.model.counters

    def power_cycle(self, where: PowerCycle = PowerCycle.AUTO,
                    note_in_stacker: int | None = None) -> str:
        """Fault hook for tests and the chaos runs: power loss and back. The line goes
        quiet too: replies still queued (late, retransmissions) are lost."""
        with self._lock:
            self._outbox.clear()
            return self.model.power_cycle(where, note_in_stacker=note_in_stacker)

    def _is_host_nak(self, frame: Frame) -> bool:
        return frame.payload[:1] == bytes((Command.NAK,))

    def _on_bad_crc(self) -> None:
        self._emit("bad CRC from host, NAK")
        self._send(build_frame(Control.NAK))

    def _for_us(self, frame: Frame) -> bool:
        return frame.address == Address.BILL_VALIDATOR  # not another peripheral's frame


# -- command line ----------------------------------------------------------------------


def parse_bills(text: str, country: str) -> list[BillRecord]:
    """"10,50,100" (types 0,1,2) or "2=10,3=50"; 0 or - leaves a slot empty."""
    records = []
    for i, item in enumerate(x.strip() for x in text.split(",")):
        if not item:
            continue
        bill_type, _, value = item.rpartition("=")
        try:
            t = int(bill_type) if bill_type else i
            v = 0 if value in ("", "-") else int(value)
            if v:
                records.append(BillRecord.for_value(t, v, country))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad bill entry {item!r}: {exc}") from None
    return records


def _parser() -> argparse.ArgumentParser:
    default = ",".join(f"{t}={v}" for t, v in DEFAULT_BILLS)
    parser = pty_device.cli_parser(
        "kiosk sim ccnet",
        "Simulated CashCode CCNET bill validator on a pseudo-terminal. "
        "Reads control commands from stdin, one per line; prints one line per event.",
        COMMANDS,
    )
    parser.add_argument("--bills", default=default,
                        help=f"bill table, e.g. '10,50,100' or '2=10,3=50' (default {default})")
    parser.add_argument("--country", default=DEFAULT_COUNTRY, help="country code of the table")
    parser.add_argument("--serial", default=DEFAULT_SERIAL, help="serial number (12 chars)")
    parser.add_argument("--part", default=DEFAULT_PART, help="part number (15 chars)")
    pty_device.add_timing_arguments(
        parser, "escrow auto-return time (spec: 10 s)", accept_s=DEFAULT_ACCEPT_S,
        accept_help="insert to escrow report; a real CashCode takes about 300-1000 ms")
    parser.add_argument("--nak-mode", choices=NAK_MODES, default="silent",
                        help="after a host NAK: stay silent, or retransmit the last reply "
                             "(unsettled on real units; default silent)")
    parser.add_argument("--nak-delay-ms", type=int, default=0,
                        help="how late a retransmission after NAK goes out (default 0)")
    pty_device.add_exit_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        records = parse_bills(args.bills, args.country)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    timing = SimTiming(**pty_device.timing_kwargs(args))
    sim = CcnetSimulator(records, part_number=args.part, serial_number=args.serial,
                         link=args.link, timing=timing, echo=pty_device.echo_line)
    sim.set_nak_mode(args.nak_mode, pty_device.ms_to_s(args.nak_delay_ms))

    def banner() -> str:
        return f"ccnet simulator {args.part} serial {args.serial} on {sim.path}"

    return pty_device.run_cli(sim, banner, args.exit_on_eof)


if __name__ == "__main__":
    sys.exit(main())
