"""`python -m tests.chaos [chaos|soak|disk|all] [options]`: the long reliability runs.

    make chaos                                        # = python -m tests.chaos chaos
    .venv/bin/python -m tests.chaos chaos --payments 1000
    .venv/bin/python -m tests.chaos soak --minutes 15
    .venv/bin/python -m tests.chaos disk              # with the UI process on Xvfb
    .venv/bin/python -m tests.chaos all

Each run prints its summary and exits 1 if money was lost or duplicated, a check failed
or the run could not complete. Scratch files go to a fresh folder under /tmp (kept with
--keep, for the core's log, the ledger, the frame logs and the desk's database).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.chaos.chaos import ChaosParams, run_chaos
from tests.chaos.disk import run_disk
from tests.chaos.soak import CLOSING_CUSTOMERS, SoakParams, run_soak


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", nargs="?", default="chaos", choices=("chaos", "soak", "disk", "all"))
    p.add_argument("--payments", type=int, default=1000, help="chaos: payments (default 1000)")
    p.add_argument("--min-kills", type=int, default=60, help="chaos: at least this many kills")
    p.add_argument("--min-window-kills", type=int, default=20,
                   help="chaos: at least this many kills between commit and ACK")
    p.add_argument("--min-uncommitted-kills", type=int, default=5,
                   help="chaos: at least this many kills between stacked report and commit")
    p.add_argument("--min-power-cycles", type=int, default=10,
                   help="chaos: at least this many validator power cycles (note in the stacker)")
    p.add_argument("--min-corrupted-each", type=int, default=5,
                   help="chaos: at least this many corrupted replies after STACK per after-NAK "
                        "behaviour (retransmit in the gap, retransmit late, silent)")
    p.add_argument("--minutes", type=float, default=15.0, help="soak: duration (default 15)")
    p.add_argument("--skip", action="append", default=[], metavar="FAULT",
                   help="soak: leave this fault kind out (repeatable)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: fixed)")
    p.add_argument("--no-ui", action="store_true", help="disk: no UI process")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    base = Path(tempfile.mkdtemp(prefix="kiosk-chaos-"))
    ok = True
    try:
        if args.what in ("chaos", "all"):
            params = ChaosParams(payments=args.payments, min_kills=args.min_kills,
                                 min_window_kills=args.min_window_kills,
                                 min_uncommitted_kills=args.min_uncommitted_kills,
                                 min_power_cycles=args.min_power_cycles,
                                 min_corrupted_each=args.min_corrupted_each)
            if args.seed is not None:
                params.seed = args.seed
            print(f"chaos: {params.payments} payments, seed {params.seed}, in {base / 'chaos'}",
                  flush=True)
            report = run_chaos(base / "chaos", params)
            print(report.summary(), flush=True)
            ok &= bool(report.recon and report.recon.ok and not report.unacked_at_end
                       and report.core_exit == 0 and report.desk_rejected == 0)
        if args.what in ("soak", "all"):
            sp = SoakParams(duration_s=args.minutes * 60)
            sp.faults = {k: w for k, w in sp.faults.items() if k not in args.skip}
            if args.seed is not None:
                sp.seed = args.seed
            print(f"soak: {args.minutes:g} min, seed {sp.seed}, in {base / 'soak'}", flush=True)
            soak = run_soak(base / "soak", sp)
            print(soak.summary(), flush=True)
            ok &= bool(soak.recon and soak.recon.ok and not soak.wrong_credit
                       and soak.core_alive and soak.core_exit == 0 and not soak.unrecovered()
                       and soak.closing_receipts == CLOSING_CUSTOMERS)
        if args.what in ("disk", "all"):
            print(f"disk: in {base / 'disk'}", flush=True)
            started = time.monotonic()
            disk = run_disk(base / "disk", with_ui=not args.no_ui)
            print(disk.summary(), flush=True)
            print(f"  took {time.monotonic() - started:.0f} s")
            ok &= not disk.problems and bool(disk.recon and disk.recon.ok)
    finally:
        if args.keep:
            print(f"scratch files kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print("RESULT: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
