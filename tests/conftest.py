"""Test configuration: make ``helpers`` importable and give each test a seeded RNG."""
from __future__ import annotations

import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test id: reproducible and different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
