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


def wait_for(cond, timeout=20.0, what="condition"):
    """Poll ``cond`` until true (bounded); fail the test on timeout."""
    if not wait_until(cond, timeout, 0.01):
        pytest.fail(f"timed out waiting for {what}")


def free_endpoint():
    """A loopback ZMQ endpoint nobody listens on (bound once, then released)."""
    import zmq

    s = zmq.Context.instance().socket(zmq.ROUTER)
    s.bind("tcp://127.0.0.1:*")
    ep = s.last_endpoint.decode()
    s.close(0)
    return ep


@pytest.fixture
def hf_offline(monkeypatch):
    """No model hub: loaders must work from local files or say why not."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on the shared 2-core machine run fastest on one torch thread."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(1234)
