"""Find out which bill acceptor sits on which serial port (`kiosk devices probe`).

Each acceptor protocol registers one probe function in `PROBERS`; a port is tried with
every distinct (protocol, serial settings) pair found in the firmware profiles, and the
device's identification picks the matching profile. Probers must not change the
device's state (no RESET, no ENABLE): a technician may run this on a live terminal.
"ccnet" and "id003" are registered.

Do not run it on a port another process owns, nor on the printer's port: the probe
bytes would reach whatever is there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from drivers.acceptor import Bill
from drivers.ccnet.billtable import DEFAULT_MINOR_DIGITS, MINOR_DIGITS
from drivers.ccnet.device import PortOpener, default_opener, profile_address
from drivers.ccnet.probe import probe_ccnet
from drivers.ccnet.timing import CcnetTiming
from drivers.framelog import FrameLog
from drivers.id003.probe import probe_id003
from drivers.id003.settings import Id003Settings
from drivers.id003.timing import Id003Timing
from drivers.profiles import (
    DEFAULT_DIR,
    Profile,
    ProfileError,
    SerialSettings,
    find_profile,
    load_profiles,
)

ACCEPTOR = "acceptor"


@dataclass(frozen=True)
class ProbeResult:
    port: str
    protocol: str | None = None  # None: no known acceptor answered
    part_number: str = ""
    serial_number: str = ""
    bill_table: tuple[Bill, ...] = ()
    profile: str | None = None  # name of the matching firmware profile
    detail: str = ""
    serial_settings: SerialSettings | None = None

    @property
    def found(self) -> bool:
        return self.protocol is not None


Prober = Callable[[str, Profile, PortOpener], ProbeResult | None]


def _probe_ccnet(port_url: str, profile: Profile, opener: PortOpener) -> ProbeResult | None:
    port = opener(port_url, profile.serial)
    try:
        found = probe_ccnet(
            port, CcnetTiming.from_profile(profile), FrameLog("probe", None),
            profile_address(profile),
        )
    finally:
        port.close()
    if found is None:
        return None
    ident = found.identification
    return ProbeResult(
        port=port_url,
        protocol="ccnet",
        part_number=ident.part_number if ident else "",
        serial_number=ident.serial_number if ident else "",
        bill_table=found.bills,
        detail=found.note,
        serial_settings=profile.serial,
    )


def _probe_id003(port_url: str, profile: Profile, opener: PortOpener) -> ProbeResult | None:
    port = opener(port_url, profile.serial)  # 8E1 on a pty: see transport.open_port
    try:
        found = probe_id003(port, Id003Timing.from_profile(profile), FrameLog("probe", None),
                            Id003Settings.from_profile(profile))
    finally:
        port.close()
    if found is None:
        return None
    return ProbeResult(
        port=port_url,
        protocol="id003",
        part_number=found.version.text if found.version else "",  # matched by [identify]
        bill_table=found.bills,
        detail=found.note,
        serial_settings=profile.serial,
    )


PROBERS: dict[str, Prober] = {"ccnet": _probe_ccnet, "id003": _probe_id003}
"""protocol → probe function; the function opens the port itself with the profile's
settings and returns None when nothing of its protocol answered."""


def _attempts(profiles: dict[str, Profile]) -> list[Profile]:
    """One representative profile per distinct (protocol, serial settings)."""
    seen: dict[tuple[str, SerialSettings], Profile] = {}
    for prof in profiles.values():
        if prof.kind == ACCEPTOR and prof.protocol in PROBERS:
            seen.setdefault((prof.protocol, prof.serial), prof)
    return list(seen.values())


def probe(
    ports: Sequence[str],
    profiles: dict[str, Profile] | None = None,
    opener: PortOpener = default_opener,
    currency: str | None = None,
) -> list[ProbeResult]:
    """One result per port, in order; a port that cannot be opened says so in `detail`, and
    an acceptor that can take no note (of `currency`, if given) says it is unusable and why,
    as the driver would put the terminal out of service for it."""
    profiles = load_profiles() if profiles is None else profiles
    attempts = _attempts(profiles)
    results = []
    for port in ports:
        result: ProbeResult | None = None
        errors = []
        for rep in attempts:
            try:
                result = PROBERS[rep.protocol](port, rep, opener)
            except OSError as exc:
                errors.append(str(exc))
                break  # the port itself is unusable; other settings will not help
            if result is not None:
                break
        if result is None:
            detail = errors[0] if errors else "no known acceptor answered"
            results.append(ProbeResult(port=port, detail=detail))
            continue
        if result.part_number:
            try:
                match = find_profile(profiles, ACCEPTOR, result.protocol or "", result.part_number)
                result = _with_profile(result, match.name)
            except ProfileError as exc:
                result = _with_profile(result, None, str(exc))
        if not any(currency is None or b.currency == currency for b in result.bill_table):
            what = f"no {currency} note" if currency else "no note this driver can name"
            result = replace(result, detail="; ".join(
                x for x in (f"UNUSABLE: {what} in its bill table", result.detail) if x))
        results.append(result)
    return results


def _with_profile(result: ProbeResult, name: str | None, note: str = "") -> ProbeResult:
    detail = "; ".join(x for x in (result.detail, note) if x)
    return replace(result, profile=name, detail=detail)


def _bills_text(bills: Sequence[Bill]) -> str:
    """"2:10RUB 3:50RUB ..." (bill type : value in major units)."""

    def major(b: Bill) -> str:
        digits = MINOR_DIGITS.get(b.currency, DEFAULT_MINOR_DIGITS)
        whole, frac = divmod(b.amount_minor, 10**digits)
        return f"{whole}.{frac:0{digits}d}" if frac else str(whole)

    return " ".join(f"{b.bill_type}:{major(b)}{b.currency}" for b in bills) or "-"


def format_table(results: Sequence[ProbeResult]) -> str:
    header = ("PORT", "PROTOCOL", "PART", "SERIAL", "PROFILE", "BILLS / DETAIL")
    rows = [header]
    for r in results:
        extra = _bills_text(r.bill_table) if r.bill_table else ""
        if r.detail:
            extra = f"{extra} ({r.detail})" if extra else r.detail
        rows.append((r.port, r.protocol or "-", r.part_number or "-", r.serial_number or "-",
                     r.profile or "-", extra))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
        for row in rows
    )


def _to_json(results: Sequence[ProbeResult]) -> str:
    out = []
    for r in results:
        item = asdict(r)
        item["bill_table"] = [asdict(b) for b in r.bill_table]
        item["serial_settings"] = asdict(r.serial_settings) if r.serial_settings else None
        out.append(item)
    return json.dumps(out, indent=2, ensure_ascii=False)


def _all_ports() -> list[str]:
    from serial.tools import list_ports

    return sorted(p.device for p in list_ports.comports())


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when at least one acceptor was identified, 1 otherwise, 2 on bad use."""
    parser = argparse.ArgumentParser(
        prog="kiosk devices probe",
        description="Identify bill acceptors on serial ports (no RESET, no state change).",
    )
    parser.add_argument("ports", nargs="*", help="ports to probe, e.g. /dev/ttyUSB0")
    parser.add_argument("--all", action="store_true", help="probe every serial port found")
    parser.add_argument("--profiles", type=Path, default=DEFAULT_DIR,
                        help="firmware profile folder")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--currency", help="the terminal's currency (ISO 4217, e.g. RUB): "
                        "an acceptor with no note of it is reported unusable")
    args = parser.parse_args(argv)
    ports = list(args.ports) or (_all_ports() if args.all else [])
    if not ports:
        parser.print_usage(sys.stderr)
        print("error: name the ports to probe, or --all", file=sys.stderr)
        return 2
    try:
        profiles = load_profiles(args.profiles)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = probe(ports, profiles, currency=args.currency)
    print(_to_json(results) if args.json else format_table(results))
    return 0 if any(r.found for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
