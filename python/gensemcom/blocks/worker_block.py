"""Base of the GNU Radio blocks that call the inference worker, off the scheduler thread.

The message handler only validates and enqueues (a bounded queue); one thread per
block calls the worker over ZeroMQ (:class:`gensemcom.worker.client.WorkerClient`),
so no model ever runs on GNU Radio's scheduler thread and a slow or dead worker never
stalls the flowgraph. Subclasses implement :meth:`worker_block.prepare` (scheduler
thread: message -> request) and :meth:`worker_block.finish` (worker thread: reply ->
message).
"""
from __future__ import annotations

import collections
import importlib.util
import os
import queue
import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pmt
from gnuradio import gr

from ..worker.client import LocalWorker, WorkerClient, WorkerError, WorkerUnavailable
from .pdu_utils import PduError, counting

_STOP = object()
#: how long stop() waits for a running worker call
STOP_WAIT_S = 5.0
#: liveness probe period while a call waits: a dead worker is noticed in about twice this
LIVENESS_MS = 2000
_LOCAL_LOCK = threading.Lock()
_LOCAL: Dict[str, LocalWorker] = {}


def worker_python() -> str:
    """The interpreter a local worker runs under: ``$GENSEMCOM_WORKER_PYTHON``; else this
    one when it can import torch; else the one recorded when the module was installed
    (``make install`` records the project's venv), so a flowgraph that GRC runs under
    /usr/bin/python3 (no torch) still gets a worker that can load the models; else this one."""
    env = os.environ.get("GENSEMCOM_WORKER_PYTHON")
    if env:
        return env
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    try:
        from .._install import WORKER_PYTHON
    except ImportError:  # a source checkout or a pip install: nothing was recorded
        WORKER_PYTHON = ""
    if WORKER_PYTHON and os.access(WORKER_PYTHON, os.X_OK):
        return WORKER_PYTHON
    return sys.executable


def shared_local_worker() -> str:
    """Address of this process's local worker, started on first use.

    Every block without an address shares it, so an encoder and a decoder in one
    flowgraph (or several flowgraphs run one after another) load each model once.
    It ends with the process, runs under :func:`worker_python`, and one that died is
    started again on the next call. Its log level is ``$GENSEMCOM_WORKER_LOG_LEVEL``
    (default INFO; ``gensemcom link`` uses WARNING).
    """
    with _LOCAL_LOCK:
        w = _LOCAL.get("worker")
        if w is None or w.proc.poll() is not None:
            level = os.environ.get("GENSEMCOM_WORKER_LOG_LEVEL", "INFO").upper()
            w = _LOCAL["worker"] = LocalWorker(["--log-level", level], python=worker_python())
        return w.address


class worker_block(counting, gr.basic_block):
    """A message block whose work is a worker call.

    Counters (``counters()``): received, sent, dropped (bad input or a full queue,
    with reasons) and ``errors`` (worker failures: error replies, no worker).

    Args:
        name (str): block name.
        address (str): worker or broker endpoint; ``''`` uses this process's local
            worker, started on first use (:func:`shared_local_worker`).
        profile (str): model profile (``tiny``, ``embedded``, ``full``).
        timeout_ms (int): per-attempt reply timeout.
        retries (int): extra attempts (fresh socket each) after a timeout.
        queue_size (int): messages waiting for the worker before new ones are dropped.
        curve_keys (str): CURVE key directory (``''``: none).
    """

    def __init__(self, name: str, address: str = "", profile: str = "tiny", timeout_ms: int = 5000,
                 retries: int = 2, queue_size: int = 16, curve_keys: str = ""):
        gr.basic_block.__init__(self, name=name, in_sig=None, out_sig=None)
        if int(timeout_ms) <= 0 or int(retries) < 0 or int(queue_size) < 1:
            raise ValueError("timeout_ms > 0, retries >= 0 and queue_size >= 1 are required")
        self._init_counters()
        self.n_errors = 0
        #: why the latest failed items failed: item id (image id) -> reason (the last 256)
        self.failures: "collections.OrderedDict[str, str]" = collections.OrderedDict()
        self.address = address
        self.profile = profile
        self.timeout_ms = int(timeout_ms)
        self.retries = int(retries)
        self.curve_keys = curve_keys or None
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=int(queue_size))
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[WorkerClient] = None
        self._port_out = pmt.intern("out")
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(self._port_out)
        self.set_msg_handler(pmt.intern("in"), self._on_msg)

    # ------------------------------------------------------------ subclass API
    def prepare(self, msg: Any) -> Tuple[str, Dict[str, np.ndarray], Dict[str, Any], Any]:
        """Scheduler thread: message -> (method, arrays, request meta, state for finish).

        Raise :class:`PduError` for bad input (dropped and counted).
        """
        raise NotImplementedError

    def finish(self, reply, state: Any) -> Optional[Any]:
        """Worker thread: the reply -> the message to publish (or None)."""
        raise NotImplementedError

    # ------------------------------------------------------------ GNU Radio hooks
    def start(self) -> bool:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name=self.name(), daemon=True)
            self._thread.start()
        return True

    def stop(self) -> bool:
        """Stop the thread (pending messages are discarded) and close the client. A call
        still running (a model can take minutes) is not waited for beyond a few seconds:
        its daemon thread is abandoned with its client, so a flowgraph stops promptly."""
        thread, self._thread = self._thread, None
        if thread is not None:
            while True:  # make room for the stop marker
                try:
                    self._queue.put_nowait(_STOP)
                    break
                except queue.Full:
                    try:
                        self._queue.get_nowait()
                    except queue.Empty:
                        pass
            thread.join(STOP_WAIT_S)
            if thread.is_alive():
                self.logger.warn(f"a worker call is still running after {STOP_WAIT_S:g} s: abandoned")
                self._client = None  # the running call owns it (ZMQ sockets are not shared across threads)
        if self._client is not None:
            self._client.close()
            self._client = None
        counting.stop(self)
        return True

    def counters(self) -> Dict[str, Any]:
        c = counting.counters(self)
        c["errors"] = self.n_errors
        c["queued"] = self._queue.qsize()
        return c

    def stats(self) -> dict:
        """Counters plus the worker client's statistics (once connected)."""
        out = self.counters()
        if self._client is not None:
            out["client"] = self._client.stats()
        return out

    # ------------------------------------------------------------ scheduler thread
    def _on_msg(self, msg: Any) -> None:
        self._enqueue(self.prepare, msg)

    def _enqueue(self, prepare, msg: Any, what: str = "input") -> None:
        """A message handler's whole work: count the message, ``prepare`` it into a worker
        call and queue that; bad input (:class:`PduError`), a full queue and anything else
        are logged, dropped and counted, never raised. ``what`` names the input in the
        drop reason (a second input port: ``"feedback"``)."""
        self._count("n_in")
        try:
            item = prepare(msg)
            self._queue.put_nowait((item, time.perf_counter()))
        except PduError as exc:
            self.drop(f"bad {what}", str(exc))
        except queue.Full:
            self.drop("queue full", f"{self._queue.maxsize} messages waiting for the worker")
        except Exception as exc:  # never raise inside a message handler
            self.drop("error", f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ worker thread
    def client(self) -> WorkerClient:
        """The worker client (connecting, or starting a local worker, on first use)."""
        if self._client is None:
            self._client = WorkerClient(self.address or shared_local_worker(), profile=self.profile,
                                        timeout_ms=self.timeout_ms, retries=self.retries,
                                        curve_keys=self.curve_keys, liveness_ms=LIVENESS_MS)
            self.logger.info(f"using the inference worker at {self._client.address}")
        return self._client

    def item_id(self, state: Any) -> Optional[str]:
        """The id a failure is reported under (subclasses: the image id); None: not kept."""
        return None

    def _fail(self, method: str, state: Any, reason: str) -> None:
        self._count("n_errors")
        self.logger.error(f"{method} failed, message dropped: {reason}")
        key = self.item_id(state)
        if key is not None:
            with self._lock:
                self.failures[key] = reason
                while len(self.failures) > 256:
                    self.failures.popitem(last=False)

    def _call(self, method, arrays, meta):
        """One worker call. A local worker that died (or stopped answering) is started
        again and the call retried once on it: the local equivalent of a broker sending
        the request to another worker."""
        try:
            return self.client().call(method, arrays, meta=meta)
        except WorkerUnavailable as exc:
            if self.address:
                raise
            self.logger.warn(f"the local worker is gone ({exc}): starting a new one and retrying once")
            self._client = None  # its socket went with the worker
            return self.client().call(method, arrays, meta=meta)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            (method, arrays, meta, state), t_in = item
            try:
                reply = self._call(method, arrays, meta)
                out = self.finish(reply, (state, t_in))
                if out is not None:
                    self.message_port_pub(self._port_out, out)
                    self._count("n_out")
            except (WorkerError, WorkerUnavailable, PduError) as exc:
                self._fail(method, state, str(exc))
            except Exception as exc:  # the thread must survive anything
                self._fail(method, state, f"{type(exc).__name__}: {exc}")
