"""The reliability suite uses the e2e suite's CLI fixture (each command in its own process, stores under tmp_path)."""

from tests.e2e.conftest import zen  # noqa: F401 (a fixture, found by name)
