"""`python -m bench [--quick] [--only NAME]`: run the benchmarks, print, write the doc.

A figure that misses its target prints FAIL but the run still succeeds (exit 0): the
figures are the product. A benchmark that cannot run at all exits 1; `--strict` also
exits 1 on any FAIL, for a CI job that wants to gate on performance.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    api_rtt,
    ccnet_latency,
    desk,
    durable_credit,
    fleet,
    fleet_nats,
    mqtt_drain,
    offers,
    printer,
    startup,
    ui,
)
from bench.common import FAIL, REPO, BenchError, BenchResult, Context, pick_scratch_base
from bench.machine import describe, one_line, other_work
from bench.report import (
    error_block,
    machine_block,
    print_result,
    print_summary,
    result_block,
    write_doc,
)

BENCHMARKS: dict[str, Callable[[Context], BenchResult]] = {
    durable_credit.KEY: durable_credit.run,
    api_rtt.KEY: api_rtt.run,
    startup.KEY: startup.run,
    mqtt_drain.KEY: mqtt_drain.run,
    ccnet_latency.KEY: ccnet_latency.run,
    printer.KEY: printer.run,
    offers.KEY: offers.run,
    ui.KEY: ui.run,
    fleet.KEY: fleet.run,
    fleet.TLS_KEY: fleet.run_tls,
    fleet_nats.KEY: fleet_nats.run,
    fleet_nats.TLS_KEY: fleet_nats.run_tls,
    fleet_nats.R1_KEY: fleet_nats.run_tls_r1,
    fleet_nats.LIGHT_KEY: fleet_nats.run_tls_light,
    fleet_nats.UPSTREAM_KEY: fleet_nats.run_tls_upstream,
    desk.KEY: desk.run,
}
DOC = REPO / "docs" / "benchmarks.md"
BUSY_SHARE = 0.25  # CPU share taken by other work above which a run is flagged


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer samples: a short check run")
    ap.add_argument("--only", action="append", metavar="NAME", default=[],
                    help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite the document")
    ap.add_argument("--doc", type=Path, default=DOC, help=f"document to update ({DOC})")
    ap.add_argument("--strict", action="store_true", help="exit 1 if any figure is FAIL")
    args = ap.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    args.names = names or list(BENCHMARKS)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    ctx = Context(quick=args.quick, scratch_base=pick_scratch_base())
    busy = other_work()
    desc = describe(ctx.scratch_base, busy)
    machine = one_line(desc)
    mode = "quick run" if args.quick else "full run"
    print(f"kiosk-agent benchmarks ({mode}): {machine}")
    if busy > BUSY_SHARE:
        print(f"warning: {busy * 100:.0f}% of the CPU is busy with other work; "
              "the figures will be pessimistic", file=sys.stderr)
    blocks = {"machine": machine_block(desc, command)}
    results: list[BenchResult] = []
    errors: dict[str, str] = {}
    for name in args.names:
        started = time.monotonic()
        try:
            result = BENCHMARKS[name](ctx)
        except (BenchError, OSError) as exc:
            errors[name] = str(exc)
            print(f"\n== {name}: could not run\n{exc}", file=sys.stderr)
            blocks[name] = error_block(name, str(exc), command, machine)
            continue
        except Exception:
            errors[name] = traceback.format_exc()
            print(f"\n== {name}: crashed\n{errors[name]}", file=sys.stderr)
            blocks[name] = error_block(name, errors[name], command, machine)
            continue
        result.details.append(f"took {time.monotonic() - started:.0f} s.")
        results.append(result)
        print_result(result)
        blocks[name] = result_block(result, command, f"{machine} ({mode})")
    print_summary(results, errors)
    if not args.no_write:
        write_doc(args.doc, blocks)
        print(f"\nwrote {args.doc}")
    if errors:
        return 1
    if args.strict and any(f.verdict == FAIL for r in results for f in r.figures):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
