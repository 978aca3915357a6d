"""Several desk processes opening one new desk database at the same moment all get it.

Found in CI: two `kiosk desk watch` processes started together on a fresh --db; one died
with "database is locked" (SQLite's switch to WAL does not wait on the busy timeout)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

OPENER = """
import sys, time
from pathlib import Path
from sync.desk import DeskStore
start = float(sys.argv[2])
while time.time() < start:
    pass
store = DeskStore(Path(sys.argv[1]))
store.close()
print("opened")
"""


def test_processes_opening_a_new_desk_database_together_all_succeed(tmp_path: Path) -> None:
    failures: list[str] = []
    for round_ in range(12):  # without the retry about half of the rounds lost one
        db = tmp_path / f"desk-{round_}.sqlite"
        start = time.time() + 1.2  # after the interpreters and imports are up: a real race
        procs = [
            subprocess.Popen([sys.executable, "-c", OPENER, str(db), repr(start)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)  # one per CPU of a small machine: a true race
        ]
        for p in procs:
            out, err = p.communicate(timeout=60)
            if p.returncode != 0 or out.strip() != "opened":
                failures.append(err.strip().splitlines()[-1] if err.strip() else out)
    assert failures == []
