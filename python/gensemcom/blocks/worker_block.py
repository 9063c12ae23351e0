"""Base of the GNU Radio blocks that call the inference worker, off the scheduler thread.

The message handler only validates and enqueues (a bounded queue); one thread per
block calls the worker over ZeroMQ (:class:`gensemcom.worker.client.WorkerClient`),
so no model ever runs on GNU Radio's scheduler thread and a slow or dead worker never
stalls the flowgraph. Subclasses implement :meth:`worker_block.prepare` (scheduler
thread: message -> request) and :meth:`worker_block.finish` (worker thread: reply ->
message).
"""
from __future__ import annotations

import os
import queue
import threading
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import pmt
from gnuradio import gr

from ..worker.client import LocalWorker, WorkerClient, WorkerError, WorkerUnavailable
from .pdu_utils import PduError, counting

_STOP = object()
_LOCAL_LOCK = threading.Lock()
_LOCAL: Dict[str, LocalWorker] = {}


def shared_local_worker() -> str:
    """Address of this process's local worker, started on first use.

    Every block without an address shares it, so an encoder and a decoder in one
    flowgraph (or several flowgraphs run one after another) load each model once.
    It ends with the process. Its log level is ``$GENSEMCOM_WORKER_LOG_LEVEL``
    (default INFO; ``gensemcom link`` uses WARNING).
    """
    with _LOCAL_LOCK:
        w = _LOCAL.get("worker")
        if w is None or w.proc.poll() is not None:
            level = os.environ.get("GENSEMCOM_WORKER_LOG_LEVEL", "INFO").upper()
            w = _LOCAL["worker"] = LocalWorker(["--log-level", level])
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
        """Stop the thread (pending messages are discarded) and close the client."""
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
            thread.join(self.timeout_ms / 1e3 * (self.retries + 1) + 5.0)
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
        self._count("n_in")
        try:
            item = self.prepare(msg)
            self._queue.put_nowait((item, time.perf_counter()))
        except PduError as exc:
            self.drop("bad input", str(exc))
        except queue.Full:
            self.drop("queue full", f"{self._queue.maxsize} messages waiting for the worker")
        except Exception as exc:  # never raise inside a message handler
            self.drop("error", f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ worker thread
    def client(self) -> WorkerClient:
        """The worker client (connecting, or starting a local worker, on first use)."""
        if self._client is None:
            self._client = WorkerClient(self.address or shared_local_worker(), profile=self.profile,
                                        timeout_ms=self.timeout_ms,
                                        retries=self.retries, curve_keys=self.curve_keys)
            self.logger.info(f"using the inference worker at {self._client.address}")
        return self._client

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            (method, arrays, meta, state), t_in = item
            try:
                reply = self.client().call(method, arrays, meta=meta)
                out = self.finish(reply, (state, t_in))
                if out is not None:
                    self.message_port_pub(self._port_out, out)
                    self._count("n_out")
            except (WorkerError, WorkerUnavailable, PduError) as exc:
                self._count("n_errors")
                self.logger.error(f"{method} failed, message dropped: {exc}")
            except Exception as exc:  # the thread must survive anything
                self._count("n_errors")
                self.logger.error(f"{method} failed, message dropped: {type(exc).__name__}: {exc}")
