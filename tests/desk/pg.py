"""A throwaway PostgreSQL cluster for the desk tests: initdb in a temporary folder, a
free loopback port, TCP only (no Unix socket), removed afterwards.

initdb and postgres refuse to run as root: as root the cluster runs as the `postgres`
user (Debian's package creates it) or, failing that, `nobody`, through `runuser`. The
binaries are found on PATH or in Debian's /usr/lib/postgresql/<version>/bin.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.loopback import free_port, port_open

READY_TIMEOUT_S = 30.0
TEST_SETTINGS = ("fsync=off",)  # a throwaway cluster: durability costs time, proves nothing
SUPERUSER = "kiosk"
RUN_AS = ("postgres", "nobody")  # when we are root, the first that exists


def pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                      key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return versions[-1] if versions else None


def run_as_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in RUN_AS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root and neither a 'postgres' nor a 'nobody' user exists")


@dataclass
class PgCluster:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kiosk-pg-")))
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    user: pwd.struct_passwd | None = None
    databases: int = 0
    # `-c` settings of the server; bench/desk.py passes () for a durable cluster
    settings: tuple[str, ...] = TEST_SETTINGS

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _cmd(self, argv: list[str]) -> list[str]:
        if self.user is None:
            return argv
        return ["runuser", "-u", self.user.pw_name, "--", *argv]

    def init(self) -> PgCluster:
        initdb = pg_bin("initdb")
        if initdb is None or pg_bin("postgres") is None:
            pytest.fail("PostgreSQL is not installed: run scripts/system-deps.sh")
        self.user = run_as_user()
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.root, 0o700)
        subprocess.run(
            self._cmd([initdb, "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                       "--encoding=UTF8", "--locale=C", "--no-sync"]),
            check=True, capture_output=True, cwd=self.root)
        return self

    def start(self) -> PgCluster:
        postgres = pg_bin("postgres")
        assert postgres is not None
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server keeps it
        if self.user is not None:
            os.chown(self.log_path, self.user.pw_uid, self.user.pw_gid)
        self.proc = subprocess.Popen(
            self._cmd([postgres, "-D", str(self.data), "-p", str(self.port),
                       "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                       "-c", "max_connections=100",
                       *(arg for s in self.settings for arg in ("-c", s))]),
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log()}")
            if port_open(self.port) and self._accepts():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"postgres did not start on {self.port}:\n{self.log()}")

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url_for("postgres", driver=False), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected at once. Through pg_ctl (it signals
        the postmaster by its pid file: `runuser` in between does not pass SIGINT on)."""
        if self.proc is not None and self.proc.poll() is None:
            pg_ctl = pg_bin("pg_ctl")
            assert pg_ctl is not None
            subprocess.run(self._cmd([pg_ctl, "stop", "-D", str(self.data), "-m", "fast",
                                      "-w", "-t", "30"]), capture_output=True, cwd=self.root)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url_for(self, database: str, driver: bool = True) -> str:
        scheme = "postgresql+psycopg" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL (postgresql://, as an operator writes it)."""
        import psycopg

        self.databases += 1
        name = f"desk_{os.getpid()}_{self.databases}"
        with psycopg.connect(self.url_for("postgres", driver=False), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name, driver=False)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""
