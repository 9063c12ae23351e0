"""Thread-safe counters and latency percentiles shared by client, server and broker."""
from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Any, Dict, Iterable

import numpy as np


def percentiles_ms(samples_s: Iterable[float]) -> Dict[str, float]:
    """Return p50/p95/p99/max in milliseconds of latency samples given in seconds.

    Args:
        samples_s: Latencies in seconds.

    Returns:
        ``{"p50": ..., "p95": ..., "p99": ..., "max": ..., "n": ...}``; values
        are 0.0 when there are no samples.
    """
    arr = np.fromiter(samples_s, dtype=float)
    if arr.size == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    p = np.percentile(arr, [50, 95, 99]) * 1e3
    return {"p50": round(float(p[0]), 4), "p95": round(float(p[1]), 4), "p99": round(float(p[2]), 4),
            "max": round(float(arr.max() * 1e3), 4), "n": int(arr.size)}


class Counters:
    """Named counters plus a bounded window of latencies, safe across threads.

    Args:
        window: How many recent latency samples to keep.
    """

    def __init__(self, window: int = 10000):
        self._lock = threading.Lock()
        self._counts: Counter = Counter()
        self._lat: deque = deque(maxlen=window)

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counts[name] += n

    def latency(self, seconds: float) -> None:
        """Record one latency sample."""
        with self._lock:
            self._lat.append(seconds)

    def get(self, name: str) -> int:
        """Current value of counter ``name``."""
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> Dict[str, Any]:
        """Copy of all counters and the latency percentiles (ms)."""
        with self._lock:
            counts = dict(self._counts)
            lat = list(self._lat)
        return {"counts": counts, "latency_ms": percentiles_ms(lat)}
