"""Fixtures for the desk service tests: a PostgreSQL cluster for the session, and a
fresh desk database of each dialect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.desk.browser import browser  # noqa: F401 - the operator's chromium
from tests.desk.pg import PgCluster
from tests.sync.conftest import broker, desk_key  # noqa: F401 - shared fixtures

DIALECTS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster().init().start()
    yield cluster
    cluster.remove()


@pytest.fixture(params=DIALECTS)
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh desk database: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "desk.sqlite")
    return str(request.getfixturevalue("pg").new_database())
