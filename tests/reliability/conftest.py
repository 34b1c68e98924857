"""The reliability suite: every test bounded in time (pytest-timeout, 600 s each: a hang is a failure, not a stuck
CI), using the e2e suite's CLI fixture (each command in its own process, stores under tmp_path)."""

import pytest

from tests.e2e.conftest import zen  # noqa: F401 (a fixture, found by name)

SECONDS_PER_TEST = 600


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/reliability/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SECONDS_PER_TEST))
