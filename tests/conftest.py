"""Shared pytest configuration: offscreen Qt, paths to the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device-address",
        action="store",
        default=None,
        help="VISA resource or address of a real instrument for tests marked 'hardware'",
    )


@pytest.fixture
def shared_data() -> Path:
    """The folder of real measurement data; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def device_address(request: pytest.FixtureRequest) -> str:
    """Address given with --device-address; skips hardware tests without one."""
    address = request.config.getoption("--device-address")
    if not address:
        pytest.skip("no --device-address given")
    return address
