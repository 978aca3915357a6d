"""Fixtures for the end-to-end stories: the broker, the desk's key and the operator's
browser, shared with tests/sync and tests/desk."""

from tests.desk.browser import browser  # noqa: F401 - the operator's chromium
from tests.sync.conftest import broker, desk_key  # noqa: F401 - mosquitto, the desk's key
