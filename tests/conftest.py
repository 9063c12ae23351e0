"""Shared fixtures: flowgraph helpers and the location of ../shared data."""
import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENSEMCOM_SHARED", ROOT.parent / "shared"))


def wait_until(pred, timeout=30.0, interval=0.005):
    """Poll ``pred`` until it is true or ``timeout`` seconds pass; returns its last value."""
    t0 = time.monotonic()
    while True:
        v = pred()
        if v or time.monotonic() - t0 > timeout:
            return v
        time.sleep(interval)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(1234)
