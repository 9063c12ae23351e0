"""WorkerServer's executor hook (what ``--ray`` plugs into), without Ray."""
import threading

import numpy as np
import pytest

from gensemcom.worker.client import WorkerClient, WorkerError
from gensemcom.worker.registry import RequestError
from gensemcom.worker.server import Executor, WorkerServer, call_method


class Recording(Executor):
    """Runs calls here, from several threads, and records them."""

    concurrency = 4

    def __init__(self):
        self.calls, self.started, self.stopped = [], False, False
        self.lock = threading.Lock()

    def start(self, server):
        self.started = True

    def stop(self):
        self.stopped = True

    def call(self, spec, ctx, parts):
        with self.lock:
            self.calls.append((spec.name, threading.current_thread().name))
        if ctx.meta.get("fail"):
            raise RequestError("remote_says_no", "the executor refused")
        return call_method(spec, ctx, parts)

    def status(self):
        return {"backend": "recording", "calls": len(self.calls)}


def test_executor_runs_queued_methods_and_keeps_error_paths():
    ex = Recording()
    with WorkerServer("tcp://127.0.0.1:*", profile="tiny", device="cpu", max_batch=1, executor=ex) as server:
        assert ex.started
        x = np.arange(12, dtype=np.float32)
        with WorkerClient(server.endpoint, timeout_ms=30_000, retries=0) as c:
            assert np.array_equal(c.call("wait", {"x": x}, meta={"delay_ms": 0})["x"], x)
            assert np.array_equal(c.call("echo", {"x": x})["x"], x)  # inline: stays on the front
            with pytest.raises(WorkerError) as ei:
                c.call("wait", {"x": x}, meta={"delay_ms": 0, "fail": True})
            assert ei.value.code == "remote_says_no"
            with pytest.raises(WorkerError) as ei:
                c.call("wait", {"x": x}, meta={"delay_ms": -1})
            assert ei.value.code == "bad_meta"
            with pytest.raises(WorkerError) as ei:
                c.call("no_such_method")
            assert ei.value.code == "unknown_method"
            st = c.status()
        assert [n for n, _ in ex.calls] == ["wait"] * 3
        assert all(t.startswith("gensemcom-exec") for _, t in ex.calls)
        assert st["executor"] == {"backend": "recording", "calls": 3}
        assert st["requests"]["errors"] == 3
    assert ex.stopped
