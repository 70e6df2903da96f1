"""Shared pytest configuration: offscreen Qt, paths to the shared real data."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Test folders mirroring the packages; some test modules reuse another's generators
#: (``from test_g2_pulsed import simulate_hbt_tags``), so each folder is importable.
TEST_FOLDERS = ("acquisition", "analysis", "cli", "drivers", "gui", "reanalysis", "simulators")
for _folder in TEST_FOLDERS:
    _path = str(Path(__file__).resolve().parent / _folder)
    if _path not in sys.path:
        sys.path.append(_path)

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
