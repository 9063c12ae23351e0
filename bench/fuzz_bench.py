#!/usr/bin/env python3
"""Fuzz benchmark of gr-gensemcom's decoders and of the inference worker's request path.

Each decoder gets ``--n`` inputs built from a seeded random generator, and every
outcome is put in one of three columns: a **result**, the **documented error**
(the one exception type the decoder promises), or an **undocumented** exception
(a bug; its types are listed):

a. ``gensemcom.frame.unpack_header``: mutated valid headers and random bytes
   (documented error: ``FrameError``);
b. ``gensemcom.frame.frame_from_pmt``: random PMTs and mutated valid frame dicts
   (``FrameError``; skipped when ``pmt`` is missing);
c. ``gensemcom.worker.wire.decode``: mutated valid messages and hostile ones
   (``WireError``);
d. the worker's request path in-process (:meth:`WorkerServer.handle_request`, no
   sockets): a result is an ``ok`` reply, a documented error an ``err`` reply
   with a documented code; an exception, no reply or an ``internal_error`` reply
   (a bug the server caught) count as undocumented.

``--hostile`` adds a hostile-load run (e): a worker on loopback receives
``--hostile-n`` hostile requests interleaved with as many legitimate ``echo``
requests, then the same through a broker with two workers; every legitimate
request must come back with its own arrays, and every hostile one with a reply.

Usage::

    python bench/fuzz_bench.py                    # 100000 inputs per decoder
    python bench/fuzz_bench.py --n 20000 --seed 1 --json fuzz.json
    python bench/fuzz_bench.py --n 1000 --hostile --hostile-n 1000

The exit code is 0 (1 with ``--strict`` when anything undocumented was seen).
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
from gensemcom.frame import FrameError, SemanticFrame, frame_from_pmt, pack_header, unpack_header  # noqa: E402
from gensemcom.worker import wire  # noqa: E402

DOCUMENTED_CODES = {
    "bad_header", "bad_version", "bad_kind", "bad_profile", "bad_dtype", "bad_shape", "bad_name", "bad_arrays",
    "bad_meta", "bad_buffer", "size_mismatch", "truncated", "extra_frames", "oversized", "unknown_method",
    "model_unavailable", "model_error", "batch_split", "unknown_system", "bad_frame", "bad_request", "no_image",
    "worker_lost",
    "no_worker", "overloaded",
}
"""Error codes of docs/worker.md that a request may get (``internal_error`` is left out: it marks a bug)."""

INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xCF, 0xD3, 0xD9, 0xDA,
               0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0x90, 0x80, 0xA0, 0xD4, 0xC7]
"""Byte values worth planting: msgpack type markers and range edges."""


# --------------------------------------------------------------------------- bookkeeping
class Tally:
    """Outcome counts of one decoder."""

    def __init__(self, name: str):
        self.name = name
        self.result = 0
        self.documented = 0
        self.undocumented = 0
        self.types: collections.Counter = collections.Counter()
        self.notes: collections.Counter = collections.Counter()
        self.seconds = 0.0

    @property
    def inputs(self) -> int:
        return self.result + self.documented + self.undocumented

    def bug(self, what: str) -> None:
        self.undocumented += 1
        self.types[what] += 1

    def as_dict(self) -> Dict[str, Any]:
        return {"decoder": self.name, "inputs": self.inputs, "result": self.result, "documented_error":
                self.documented, "undocumented": self.undocumented, "exception_types": dict(self.types),
                "notes": dict(self.notes), "seconds": round(self.seconds, 2)}


def run_total(tally: Tally, fn: Callable[[Any], Any], inputs: Iterator[Any], documented: type, n: int,
              quiet: bool = False) -> Tally:
    """Feed ``n`` inputs to ``fn`` and count results, documented errors and other exceptions."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    for x in tqdm(inputs, total=n, desc=tally.name, unit="in", disable=quiet, leave=False, file=sys.stderr):
        try:
            fn(x)
            tally.result += 1
        except documented:
            tally.documented += 1
        except Exception as exc:  # the point of the bench: count it, name it
            tally.bug(type(exc).__name__)
    tally.seconds = time.perf_counter() - t0
    return tally


# --------------------------------------------------------------------------- mutations
def mutate_bytes(rng: random.Random, data: bytes, max_edits: int = 6) -> bytes:
    """Apply 1..max_edits random edits (flip, plant, insert, delete, truncate, repeat)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, max_edits)):
        op = rng.randrange(7)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[min(i, len(b) - 1)] = rng.choice(INTERESTING)
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 3 and b:
            del b[i:i + rng.randint(1, 8)]
        elif op == 4:
            del b[i:]
        elif op == 5 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 16)]
        elif b:  # any byte to any value
            b[min(i, len(b) - 1)] = rng.randrange(256)
        else:
            b.append(rng.randrange(256))
    return bytes(b)


def random_bytes(rng: random.Random, max_len: int = 300) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, max_len)))


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able value (scalars, str/bytes, nested lists and maps with str or bytes keys)."""
    k = rng.randrange(12 if depth < 3 else 9)
    if k == 0:
        return None
    if k == 1:
        return rng.random() < 0.5
    if k == 2:
        return rng.choice([0, 1, -1, 2**31, -2**31, 2**63 - 1, -2**63, 2**64 - 1, 2**40, rng.randint(-1000, 1000)])
    if k == 3:
        return rng.choice([0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e308, rng.uniform(-1e3, 1e3)])
    if k in (4, 5):
        return rng.choice(["", "echo", "status", "wait", "tiny_encode", "float32", "x", "../../etc/passwd",
                           "\x00", "é" * rng.randint(1, 5), "a" * rng.randint(0, 200)])
    if k == 6:
        return random_bytes(rng, 16)
    if k == 7:
        return msgpack.ExtType(rng.randrange(128), random_bytes(rng, 8))
    if k == 8:
        return rng.randint(-2**63, 2**64 - 1)
    if k in (9, 10):
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [rng.choice(["delay_ms", "system", "k", "", "a"]) if rng.random() < 0.7 else random_bytes(rng, 4)
            for _ in range(rng.randint(0, 4))]
    return {key: random_value(rng, depth + 1) for key in keys}


# --------------------------------------------------------------------------- (a) unpack_header
def valid_packets() -> List[bytes]:
    frames = [SemanticFrame("tisc", b"payload", {"fg": np.ones(4), "bg": np.ones(2)}, {"pos": 1}),
              SemanticFrame("deepjscc", b"", np.arange(8.0), {"h": 32, "w": 32, "q": [1, 2, 3]}),
              SemanticFrame("jpeg2000_ldpc", bytes(range(64)), None, {"n": 64}),
              SemanticFrame("gened", b"x" * 20, {"a": np.ones(2)}, {"s": "text", "b": b"\x00\x01"})]
    return [pack_header(f, [1.0] * len(f.segments)) for f in frames]


def digital_inputs(rng: random.Random, n: int) -> Iterator[bytes]:
    good = valid_packets()
    for i in range(n):
        yield mutate_bytes(rng, rng.choice(good)) if i % 2 == 0 else random_bytes(rng)


# --------------------------------------------------------------------------- (b) frame_from_pmt
def random_pmt(pmt: Any, rng: random.Random, depth: int = 0) -> Any:
    """A random PMT of any kind (scalars, symbols, uniform vectors, pairs, tuples, vectors, dicts)."""
    k = rng.randrange(15 if depth < 3 else 9)
    if k == 0:
        return pmt.PMT_NIL
    if k == 1:
        return pmt.from_bool(rng.random() < 0.5)
    if k == 2:
        return pmt.from_long(rng.randint(-2**63, 2**63 - 1))
    if k == 3:
        return pmt.from_double(rng.choice([float("nan"), float("inf"), rng.uniform(-1e6, 1e6)]))
    if k == 4:
        return pmt.intern(rng.choice(["system", "digital", "analog", "segments", "header", "meta", "crc_ok",
                                      "tisc", "", "x" * rng.randint(1, 80)]))
    if k == 5:
        b = random_bytes(rng, 40)
        return pmt.init_u8vector(len(b), list(b))
    if k == 6:
        vals = [rng.choice([float("nan"), float("inf"), rng.uniform(-10, 10)]) for _ in range(rng.randint(0, 12))]
        return pmt.init_f32vector(len(vals), vals)
    if k == 7:
        vals = [rng.randint(-2**31, 2**31 - 1) for _ in range(rng.randint(0, 6))]
        return pmt.init_s32vector(len(vals), vals)
    if k == 8:
        return pmt.from_complex(complex(rng.uniform(-1, 1), rng.uniform(-1, 1)))
    if k == 9:
        return pmt.cons(random_pmt(pmt, rng, depth + 1), random_pmt(pmt, rng, depth + 1))
    if k == 10:
        return pmt.make_tuple(*[random_pmt(pmt, rng, depth + 1) for _ in range(rng.randint(1, 4))])
    if k == 11:
        return _vector(pmt, [random_pmt(pmt, rng, depth + 1) for _ in range(rng.randint(0, 4))])
    if k == 12:
        vals = [complex(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(rng.randint(0, 4))]
        return pmt.init_c32vector(len(vals), vals)
    d = pmt.make_dict()
    for _ in range(rng.randint(0, 4)):
        d = pmt.dict_add(d, random_pmt(pmt, rng, depth + 1), random_pmt(pmt, rng, depth + 1))
    return d


def _vector(pmt: Any, items: List[Any]) -> Any:
    v = pmt.make_vector(len(items), pmt.PMT_NIL)
    for i, x in enumerate(items):
        pmt.vector_set(v, i, x)
    return v


def pmt_inputs(pmt: Any, rng: random.Random, n: int) -> Iterator[Any]:
    from gensemcom.frame import frame_to_pmt

    keys = ["system", "digital", "analog", "segments", "header", "meta", "crc_ok"]
    good = [frame_to_pmt(SemanticFrame("tisc", b"payload", {"fg": np.ones(4), "bg": np.ones(2)}, {"pos": 1},
                                       {"image_id": "k"}, crc_ok=True)),
            frame_to_pmt(SemanticFrame("deepjscc", b"", np.arange(6.0), {"h": 8}))]
    for i in range(n):
        if i % 4 == 0:
            yield random_pmt(pmt, rng)
            continue
        d = rng.choice(good)
        for _ in range(rng.randint(1, 3)):
            key = pmt.intern(rng.choice(keys + ["extra"]))
            op = rng.randrange(3)
            if op == 0:
                d = pmt.dict_delete(d, key)
            elif op == 1:
                d = pmt.dict_add(d, key, random_pmt(pmt, rng))
            else:  # mutate the bytes of a u8vector field (header msgpack or digital)
                cur = pmt.dict_ref(d, key, pmt.PMT_NIL)
                if pmt.is_u8vector(cur):
                    b = mutate_bytes(rng, bytes(pmt.u8vector_elements(cur)))
                    d = pmt.dict_add(d, key, pmt.init_u8vector(len(b), list(b)))
        yield d


# --------------------------------------------------------------------------- (c) wire messages
def _frames(msg: List[Any]) -> List[bytes]:
    return [bytes(f) for f in msg]


def valid_messages() -> List[List[bytes]]:
    rng = np.random.default_rng(0)
    return [
        _frames(wire.encode_request(1, "echo", {"x": np.arange(4, dtype=np.float32)})),
        _frames(wire.encode_request(2, "tiny_encode", {"image": rng.random((1, 3, 8, 8), dtype=np.float32)},
                                    profile="tiny")),
        _frames(wire.encode_request(3, "wait", {"a": np.zeros((2, 3), np.int16), "b": np.ones(0, np.uint8)},
                                    meta={"delay_ms": 1})),
        _frames(wire.encode_request(4, "status")),
        _frames(wire.encode_request(5, "tiny_decode", {"latent": np.zeros((1, 4, 2, 2), np.float32)},
                                    meta={"k": [1, 2], "s": "x"})),
        _frames(wire.encode_reply(6, "echo", {"y": np.arange(3, dtype=np.complex64)}, meta={"a": 1})),
        _frames(wire.encode_error(7, "echo", "bad_shape", "no")),
    ]


def _header_of(frames: List[bytes]) -> Dict[str, Any]:
    return msgpack.unpackb(frames[0], raw=False)


def hostile_message(rng: random.Random, base: List[bytes]) -> List[bytes]:
    """A well-framed message built from ``base`` with a structural mutation (a lying or odd header)."""
    header = _header_of(base)
    bufs = list(base[1:])
    op = rng.randrange(12)
    if op == 0:  # the request that silenced workers: meta keys of mixed types
        header["meta"] = {"a": 1, b"b": 2, **({"delay_ms": 1} if rng.random() < 0.5 else {})}
    elif op == 1:  # meta that is not a map, or with non-string keys only
        header["meta"] = rng.choice([[1, 2], "meta", 5, {b"k": 1}, {b"\xff": None}])
    elif op == 2 and header.get("a"):  # shape lies about the frame: bigger, empty with absurd dims, negative
        desc = rng.choice(header["a"])
        desc[2] = rng.choice([[2**39], [0, 2**39, 2**39], [2**39 - 1] * 8, [0] + [2**39] * 7, [-1], [1.5],
                              [True], "4", None, [2**40], list(desc[2]) + [1] * 9])
    elif op == 3 and header.get("a"):  # dtype lies: other width, unsupported, pickle-ish
        rng.choice(header["a"])[1] = rng.choice(list(wire.DTYPES) + ["O", "object", "<f4", "float128", "", 7])
    elif op == 4 and header.get("a"):  # names: duplicate, path, empty, too long, non-str
        d = rng.choice(header["a"])
        d[0] = rng.choice(["../x", "", "a" * 100, 5, None] + [x[0] for x in header["a"]])
    elif op == 5:  # frames dropped, added, resized
        k = rng.randrange(3)
        if k == 0 and bufs:
            bufs.pop(rng.randrange(len(bufs)))
        elif k == 1:
            bufs.append(random_bytes(rng, 32))
        elif bufs:
            j = rng.randrange(len(bufs))
            bufs[j] = bufs[j][:max(0, len(bufs[j]) - rng.randint(1, 8))] if rng.random() < 0.5 else \
                bufs[j] + random_bytes(rng, 8)
    elif op == 6:  # any field replaced by any value
        header[rng.choice(["v", "id", "k", "m", "p", "a", "meta", "e", "code"])] = random_value(rng)
    elif op == 7:  # a field removed
        header.pop(rng.choice(list(header)), None)
    elif op == 8:  # descriptors of the wrong form
        header["a"] = rng.choice([[[]], [["x"]], [["x", "float32"]], [["x", "float32", [1], 9]], "a", {"x": 1},
                                  [None] * 3, [["x", "float32", [1]]] * 65])
    elif op == 9:  # method, profile, kind and version one may not use
        header.update(rng.choice([{"m": "__import__('os').system"}, {"m": "os.system"}, {"m": "x" * 65},
                                  {"p": "/etc/passwd"}, {"p": "full\x00"}, {"k": "ok"}, {"k": "exec"},
                                  {"v": 2}, {"v": "1"}, {"id": True}, {"id": -2**63}, {"id": 2**64 - 1}]))
    elif op == 10:  # deep or bulky meta inside the header limit
        v: Any = 1
        for _ in range(rng.choice([10, 100, 500])):
            v = [v]
        header["meta"] = rng.choice([{"deep": v}, {"s": "x" * 60000}, {f"k{i}": i for i in range(1000)}])
    else:  # keys of the header itself of the wrong type
        header[rng.choice([b"v", b"m", b"meta"])] = random_value(rng)
    try:
        head = msgpack.packb(header, use_bin_type=True)
    except (ValueError, TypeError, OverflowError):
        head = base[0]
    if len(head) > wire.MAX_HEADER_BYTES:
        head = head[:wire.MAX_HEADER_BYTES + rng.randint(-10, 10)]
    return [head] + bufs


def wire_inputs(rng: random.Random, n: int) -> Iterator[List[bytes]]:
    good = valid_messages()
    for i in range(n):
        base = rng.choice(good)
        k = i % 4
        if k == 0:
            yield hostile_message(rng, base)
        elif k == 1:  # header bytes mutated
            yield [mutate_bytes(rng, base[0])] + list(base[1:])
        elif k == 2:  # both: a structural lie, then byte edits anywhere
            frames = hostile_message(rng, base)
            j = rng.randrange(len(frames))
            frames[j] = mutate_bytes(rng, frames[j])
            yield frames
        else:  # random frames
            yield [random_bytes(rng, 64) for _ in range(rng.randint(0, 4))]


# --------------------------------------------------------------------------- (d) request path
REQUEST_METHODS = ["echo", "status", "tiny_encode", "tiny_decode", "semantic_decode", "semantic_encode",
                   "semantic_load", "nope", "wait"]
META_KEYS = ["system", "snr_db", "modulation", "code_rate", "budget_symbols", "session", "round", "segments",
             "crc_ok", "delay_ms", "fb_segments", "fb_crc_ok"]


def structured_request(rng: random.Random, systems: List[str]) -> List[Any]:
    """A plausible request of a real method (arrays and meta it expects), then 0..2 mutations.

    Reaches the handlers (tiny models, semantic systems in the ``tiny`` profile, ``full``
    offline) rather than stopping at the decoder; images stay small (at most 32x32) and
    the ``embedded`` profile is left out (its TISC optimises for seconds per image).
    """
    method = rng.choice(REQUEST_METHODS)
    nrng = np.random.default_rng(rng.randrange(2**32))
    arrays: Dict[str, np.ndarray] = {}
    meta: Dict[Any, Any] = {}
    if method in ("echo", "wait", "nope"):
        arrays = {"x": nrng.standard_normal(rng.randint(0, 8)).astype(np.float32)}
        meta = {"delay_ms": rng.choice([0, 1])} if method == "wait" else {}
    elif method == "tiny_encode":
        arrays = {"image": nrng.random((rng.randint(1, 2), 3, 8, 8), dtype=np.float32)}
    elif method == "tiny_decode":
        arrays = {"latent": nrng.standard_normal((1, 4, 2, 2)).astype(np.float32)}
    elif method.startswith("semantic"):
        meta = {"system": rng.choice(systems + ["nope", "", "../tisc"])}
        side = rng.choice([8, 16, 32])
        if method == "semantic_encode":
            arrays = {"image": nrng.integers(0, 256, (side, side, 3), dtype=np.uint8)}
            meta.update({"snr_db": rng.choice([0.0, 10.0, -5.0]), "modulation": rng.choice([4, 16, 64])})
        elif method == "semantic_decode":
            n_analog = rng.choice([0, 2, 16, 64])
            arrays = {"digital": nrng.integers(0, 256, rng.randint(0, 64), dtype=np.uint8),
                      "analog": nrng.standard_normal(n_analog).astype(np.float32),
                      "header": np.frombuffer(msgpack.packb({"h": side, "w": side}), np.uint8)}
            meta.update({"crc_ok": rng.random() < 0.5, "segments": [["analog", n_analog]]})
    for _ in range(rng.randint(0, 2)):
        op = rng.randrange(6)
        if op == 0:
            meta[rng.choice(META_KEYS)] = random_value(rng)
        elif op == 1:
            meta[rng.choice([b"system", b"x", 3])] = 1  # keys that are not strings
        elif op == 2 and arrays:
            name = rng.choice(list(arrays))
            arrays[name] = arrays[name].astype(rng.choice(list(wire.DTYPES)))
        elif op == 3 and arrays:
            name = rng.choice(list(arrays))
            arrays[name] = arrays[name].reshape(-1) if rng.random() < 0.5 else arrays[name][None]
        elif op == 4:
            arrays[rng.choice(["x", "image", "fb_digital", "digital"])] = np.zeros(rng.randint(0, 4), np.uint8)
        else:
            meta.pop(rng.choice(list(meta) or ["x"]), None)
    try:
        return _frames(wire.encode_request(rng.randrange(2**31), method, arrays, meta=meta,
                                           profile=rng.choice(["", "", "", "tiny", "full"])))
    except (wire.WireError, TypeError, ValueError, OverflowError):
        return _frames(wire.encode_request(0, method))


def request_inputs(rng: random.Random, n: int) -> Iterator[List[bytes]]:
    """Requests for the request path: a third plausible (reaching the handlers), the rest as for (c)."""
    from gensemcom import systems

    names = list(systems.names())
    good = [m for m in valid_messages()]
    for i, frames in enumerate(wire_inputs(rng, n)):
        if i % 3 == 0:
            yield structured_request(rng, names)
            continue
        try:
            header = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
        except Exception:
            yield frames
            continue
        if isinstance(header, dict) and rng.random() < 0.3:
            header["m"] = rng.choice(REQUEST_METHODS)
            if header.get("m") == "wait":
                header["meta"] = {"delay_ms": rng.choice([0, 1, -1, "1", None, 10**9])}
            try:
                frames = [msgpack.packb(header, use_bin_type=True)] + list(frames[1:])
            except Exception:
                frames = rng.choice(good)
        yield frames


def classify_reply(tally: Tally, reply: Optional[List[Any]]) -> None:
    """Count one reply of the request path."""
    if reply is None:
        tally.bug("no reply")
        return
    try:
        msg = wire.decode([bytes(f) if not isinstance(f, bytes) else f for f in reply])
    except wire.WireError as exc:
        tally.bug(f"malformed reply ({exc.code})")
        return
    if msg.kind == wire.KIND_OK:
        tally.result += 1
    elif msg.code in DOCUMENTED_CODES:
        tally.documented += 1
        tally.notes[msg.code] += 1
        if msg.code == "model_error":  # documented, but names an exception inside a method
            tally.notes["model_error: " + msg.error.split(" raised ", 1)[-1].split(":", 1)[0]] += 1
    else:
        kind = msg.error.split(": ", 2)[1] if msg.code == "internal_error" and ": " in msg.error else msg.code
        tally.bug(f"{msg.code}({kind})")


def run_request_path(rng: random.Random, n: int, quiet: bool = False) -> Tally:
    """(d): every mutated request through :meth:`WorkerServer.handle_request`, in-process."""
    from tqdm import tqdm

    from gensemcom.worker.server import WorkerServer

    srv = WorkerServer("tcp://127.0.0.1:*", device="cpu", max_wait_ms=0, max_batch=1)
    tally = Tally("worker request path")
    t0 = time.perf_counter()
    for frames in tqdm(request_inputs(rng, n), total=n, desc=tally.name, unit="req", disable=quiet, leave=False,
                       file=sys.stderr):
        try:
            reply = srv.handle_request(frames)
        except Exception as exc:  # handle_request promises not to raise
            tally.bug(type(exc).__name__)
            continue
        classify_reply(tally, reply)
    tally.seconds = time.perf_counter() - t0
    return tally


# --------------------------------------------------------------------------- (e) hostile load
LEGIT_BASE = 1 << 40
"""Ids of legitimate requests start here; hostile ones use smaller ids (or none)."""


def hostile_requests(rng: random.Random, n: int) -> List[List[bytes]]:
    """``n`` hostile but well-framed requests (each gets a reply from a healthy worker).

    They never form a valid slow request: ``wait`` requests carry a bad delay, so the
    compute queue does not back up and the run measures robustness, not model time.
    """
    good = valid_messages()
    out = []
    while len(out) < n:
        k = rng.randrange(5)
        if k == 0:
            frames = [mutate_bytes(rng, good[0][0])] + list(good[0][1:])
        elif k == 1:
            frames = [random_bytes(rng, 64) for _ in range(rng.randint(1, 3))]
        elif k == 2:  # the poison of the issue, on every kind of method
            h = _header_of(rng.choice(good[:5]))
            h["meta"] = {"delay_ms": 1, b"b": 2}
            frames = [msgpack.packb(h, use_bin_type=True)]
            frames += [bytes(np.prod(d[2], dtype=np.int64) * np.dtype(wire.DTYPES[d[1]]).itemsize)
                       for d in h["a"]]
        else:
            frames = hostile_message(rng, rng.choice(good))
        try:  # keep it hostile, not slow: no model runs, no sleeps, and no legitimate ids
            h = msgpack.unpackb(frames[0], raw=False, strict_map_key=False)
        except Exception:
            h = None
        if isinstance(h, dict) and (h.get("m") in ("wait", "tiny_encode", "tiny_decode") or (
                isinstance(h.get("id"), int) and h["id"] >= LEGIT_BASE)):
            if h.get("m") == "wait":
                h["meta"] = rng.choice([{"delay_ms": 10**9}, {"delay_ms": 1, b"x": 1}, {"delay_ms": "1"}])
            elif h.get("m") in ("tiny_encode", "tiny_decode"):
                h["meta"] = rng.choice([{b"poison": 1}, {"k": 1, b"poison": 2}, {7: 1}, [1]])
            if isinstance(h.get("id"), int) and h["id"] >= LEGIT_BASE:
                h["id"] = 0
            try:
                frames[0] = msgpack.packb(h, use_bin_type=True)
            except Exception:
                continue
        out.append(frames)
    return out


def legit_request(i: int) -> Tuple[List[Any], np.ndarray]:
    x = np.arange(i % 97 + 1, dtype=np.float32) * (i + 1)
    return wire.encode_request(LEGIT_BASE + i, "echo", {"x": x}), x


def hostile_load(endpoint: str, n_hostile: int, n_legit: int, seed: int = 0, window: int = 32,
                 timeout_s: float = 20.0, quiet: bool = True, desc: str = "hostile load") -> Dict[str, Any]:
    """Send hostile and legitimate requests interleaved (``window`` in flight) and check the replies.

    Returns:
        Counts: ``sent``, ``legit_ok`` (right arrays), ``legit_wrong``,
        ``legit_missing`` (no reply, or never sent because the peer stopped
        reading), ``hostile_replies``, ``hostile_missing``, ``codes`` (error
        codes seen) and ``seconds``. Every request is expected to get exactly one
        reply; the run gives up after ``timeout_s`` without any.
    """
    import zmq
    from tqdm import tqdm

    rng = random.Random(seed)
    hostile = hostile_requests(rng, n_hostile)
    legit = [legit_request(i) for i in range(n_legit)]
    order = [("h", i) for i in range(n_hostile)] + [("l", i) for i in range(n_legit)]
    rng.shuffle(order)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.sndtimeo = int(timeout_s * 1e3)  # a silent peer fills the pipe: give up rather than block
    sock.connect(endpoint)
    out = {"legit_ok": 0, "legit_wrong": 0, "legit_missing": 0, "hostile_replies": 0, "hostile_missing": 0,
           "codes": collections.Counter(), "sent": 0}
    pending_legit = set()
    in_flight = 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s  # moved on by every reply: an inactivity timeout

    def receive() -> bool:
        nonlocal in_flight, deadline
        if not sock.poll(max(0, int((deadline - time.monotonic()) * 1e3))):
            return False
        deadline = time.monotonic() + timeout_s
        frames = sock.recv_multipart()
        while frames and not frames[0]:  # a REQ-style envelope comes back with its empty frame
            frames = frames[1:]
        in_flight -= 1
        try:
            msg = wire.decode(frames)
        except wire.WireError:
            out["codes"]["undecodable reply"] += 1
            out["hostile_replies"] += 1
            return True
        rid = msg.request_id - LEGIT_BASE
        if msg.kind == wire.KIND_OK and msg.method == "echo" and rid in pending_legit:
            pending_legit.discard(rid)
            good = "x" in msg.arrays and np.array_equal(msg.arrays["x"], legit[rid][1])
            out["legit_ok" if good else "legit_wrong"] += 1
        elif 0 <= rid < n_legit and rid in pending_legit:
            pending_legit.discard(rid)
            out["legit_wrong"] += 1
            out["codes"][f"legit:{msg.code}"] += 1
        else:
            out["hostile_replies"] += 1
            out["codes"][msg.code or msg.kind] += 1
        return True

    try:
        for kind, i in tqdm(order, desc=desc, unit="req", disable=quiet, leave=False, file=sys.stderr):
            while in_flight >= window and receive():
                pass
            try:
                sock.send_multipart(hostile[i] if kind == "h" else legit[i][0])
            except zmq.Again:
                break
            if kind == "l":
                pending_legit.add(i)
            in_flight += 1
            out["sent"] += 1
        while in_flight > 0 and receive():
            pass
    finally:
        sock.close(0)
    out["legit_missing"] = n_legit - out["legit_ok"] - out["legit_wrong"]
    out["hostile_missing"] = n_hostile - out["hostile_replies"]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["codes"] = dict(out["codes"].most_common())
    return out


def run_hostile(n: int, seed: int, quiet: bool = False) -> Dict[str, Any]:
    """(e): ``n`` hostile + ``n`` legitimate requests to one worker, then through a broker with two."""
    from gensemcom.worker.broker import Broker
    from gensemcom.worker.client import WorkerClient
    from gensemcom.worker.server import WorkerServer

    results: Dict[str, Any] = {}
    with WorkerServer("tcp://127.0.0.1:*", device="cpu") as srv:
        results["worker"] = hostile_load(srv.endpoint, n, n, seed, quiet=quiet, desc="hostile -> worker")
        with WorkerClient(srv.endpoint, timeout_ms=2000, retries=0) as c:
            results["worker"]["alive_after"] = c.ping(2000)
    broker = Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", heartbeat_ms=200).start()
    workers = [WorkerServer(connect_broker=broker.backend_endpoint, device="cpu", heartbeat_ms=200,
                            name=f"w{i}").start() for i in range(2)]
    try:
        deadline = time.monotonic() + 20
        while len(broker.status()["workers"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        results["broker"] = hostile_load(broker.frontend_endpoint, n, n, seed + 1, quiet=quiet,
                                         desc="hostile -> broker")
        st = broker.status()
        results["broker"]["workers_alive_after"] = len(st["workers"])
        results["broker"]["workers_lost"] = st["requests"].get("workers_lost", 0)
        results["broker"]["answered_per_worker"] = [w["answered"] for w in st["workers"]]
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    return results


# --------------------------------------------------------------------------- main
def print_table(tallies: List[Tally]) -> None:
    print(f"{'decoder':28s} {'inputs':>8s} {'result':>8s} {'documented':>11s} {'undocumented':>13s}  "
          f"{'time s':>7s}  exception types")
    for t in tallies:
        types = ", ".join(f"{k} x{v}" for k, v in t.types.most_common()) or "-"
        print(f"{t.name:28s} {t.inputs:8d} {t.result:8d} {t.documented:11d} {t.undocumented:13d}  "
              f"{t.seconds:7.1f}  {types}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="See the module docstring for what each decoder gets.")
    p.add_argument("--n", type=int, default=100000, help="inputs per decoder (default: %(default)s)")
    p.add_argument("--request-n", type=int, default=None,
                   help="inputs for the worker request path (default: --n)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--only", choices=["digital", "pmt", "wire", "request"], action="append", default=None,
                   help="run only these decoders (repeatable)")
    p.add_argument("--hostile", action="store_true",
                   help="also run the hostile-load test against a worker and a broker with two workers")
    p.add_argument("--hostile-n", type=int, default=1000,
                   help="hostile requests (and as many legitimate echo requests) per run (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON to PATH")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true", help="exit 1 if anything undocumented was seen")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):  # never wait on a model hub
        os.environ.setdefault(var, "1")
    logging.disable(logging.CRITICAL)  # the worker logs every failure it catches; keep the table readable
    try:
        return _run(args)
    finally:
        logging.disable(logging.NOTSET)


def _run(args: argparse.Namespace) -> int:
    only = set(args.only or ["digital", "pmt", "wire", "request"])
    tallies: List[Tally] = []
    skipped: List[str] = []
    if "digital" in only:
        rng = random.Random(args.seed)
        tallies.append(run_total(Tally("frame.unpack_header"), unpack_header, digital_inputs(rng, args.n),
                                 FrameError, args.n, args.quiet))
    if "pmt" in only:
        try:
            import pmt
        except ImportError:
            skipped.append("frame.frame_from_pmt (no pmt module)")
        else:
            rng = random.Random(args.seed + 1)
            tallies.append(run_total(Tally("frame.frame_from_pmt"), frame_from_pmt, pmt_inputs(pmt, rng, args.n),
                                     FrameError, args.n, args.quiet))
    if "wire" in only:
        rng = random.Random(args.seed + 2)
        tallies.append(run_total(Tally("worker wire.decode"), wire.decode, wire_inputs(rng, args.n),
                                 wire.WireError, args.n, args.quiet))
    if "request" in only:
        rng = random.Random(args.seed + 3)
        tallies.append(run_request_path(rng, args.request_n or args.n, args.quiet))
    print(f"fuzz bench: seed {args.seed}, {args.n} inputs per decoder")
    print_table(tallies)
    for s in skipped:
        print(f"skipped: {s}")
    for t in tallies:
        if t.notes:
            print(f"{t.name} error codes: " + ", ".join(f"{k} {v}" for k, v in t.notes.most_common()))
    report: Dict[str, Any] = {"seed": args.seed, "n": args.n, "decoders": [t.as_dict() for t in tallies],
                              "skipped": skipped}
    if args.hostile:
        report["hostile"] = run_hostile(args.hostile_n, args.seed, args.quiet)
        for where, r in report["hostile"].items():
            print(f"hostile load -> {where}: {args.hostile_n} hostile + {args.hostile_n} echo in {r['seconds']} s: "
                  f"legit ok {r['legit_ok']}, wrong {r['legit_wrong']}, missing {r['legit_missing']}; "
                  f"hostile answered {r['hostile_replies']}, missing {r['hostile_missing']}; "
                  + ", ".join(f"{k}={v}" for k, v in r.items() if k in ("alive_after", "workers_alive_after",
                                                                         "workers_lost", "answered_per_worker")))
            print("  codes: " + ", ".join(f"{k} {v}" for k, v in r["codes"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    bad = sum(t.undocumented for t in tallies)
    if args.hostile:
        bad += sum(r["legit_wrong"] + r["legit_missing"] + r["hostile_missing"] for r in report["hostile"].values())
    return 1 if (args.strict and bad) else 0


if __name__ == "__main__":
    sys.exit(main())
