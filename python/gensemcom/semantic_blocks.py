"""GNU Radio blocks of the semantic link: encoder, decoder, and the frame <-> PHY glue.

``semantic_encoder`` (image PDU -> SemanticFrame dict) and ``semantic_decoder``
(SemanticFrame dict -> image PDU; ``diffusion_decoder`` is the same block under the
design card's name) call the inference worker (any system, any profile);
``frame_mapper`` splits a frame into its digital PDU (header and payload bytes, for
``digital_tx``) and its analog PDU (unit-power complex symbols, scale in the header),
and ``frame_demapper`` pairs the two received PDUs back into a frame, flagging a
digital part that failed CRC.

Image PDUs are u8 vectors of the flattened (H, W, 3) RGB image with metadata
``shape`` = [H, W, 3] and provenance (``image_id``, ``path``).
"""
from __future__ import annotations

import collections
import time
from typing import Any, Dict

import msgpack
import numpy as np
import pmt
from gnuradio import gr

from .frame import FrameError, SemanticFrame, frame_from_pmt, frame_to_pmt
from .pdu_utils import (KEY_CRC_OK, PduError, counting, make_pdu, meta_get, meta_set, parse_pdu)
from .phy.analog import analog_demap, analog_map
from .worker_block import worker_block

KEY_SHAPE = "shape"
KEY_FRAME_SEQ = "frame_seq"
_NON_FRAME_META = ("shape",)


def image_from_pdu(msg, max_pixels: int = 4096 * 4096):
    """An image PDU -> (metadata PMT dict, uint8 array (H, W, 3)); raises PduError."""
    meta, data = parse_pdu(msg, "u8", max_items=3 * max_pixels)
    shape = meta_get(meta, KEY_SHAPE)
    if shape is None:
        raise PduError("image PDU needs metadata 'shape' = [H, W, 3]")
    shape = tuple(int(s) for s in np.asarray(shape).reshape(-1))
    if len(shape) != 3 or shape[2] != 3 or shape[0] * shape[1] * 3 != data.size:
        raise PduError(f"image shape {list(shape)} does not match {data.size} bytes of RGB")
    return meta, data.reshape(shape)


def image_to_pdu(meta, image: np.ndarray):
    """(metadata, uint8 (H, W, 3)) -> image PDU with ``shape`` in the metadata."""
    meta = meta_set(meta if meta is not None else pmt.make_dict(), KEY_SHAPE, np.asarray(image.shape, np.int32))
    return make_pdu(meta, image.reshape(-1), "u8")


def _python_meta(meta) -> Dict[str, Any]:
    out = {}
    for k, v in (pmt.to_python(meta) or {}).items():
        if k in _NON_FRAME_META:
            continue
        if isinstance(v, np.ndarray):
            v = v.tolist()
        out[str(k)] = v
    return out


class semantic_encoder(worker_block):
    """Image PDU in, SemanticFrame (PMT dict) out, computed by the inference worker.

    Args:
        system (str): semantic system, e.g. "deepjscc", "jpeg2000-ldpc", "tisc".
        profile (str): model profile: "embedded" (shipped weights), "tiny" (random
            test models), "full" (Hugging Face ids or local paths on the worker).
        snr_db (float): the SNR the transmitter assumes (fed back from the
            receiver in a real link; SNR-adaptive systems use it). Settable.
        modulation (int): QAM order of the digital path (rate-matched systems).
        code_rate (float): LDPC rate of the digital path (rate-matched systems).
        budget_symbols (int): channel uses per image for rate-matched systems
            (0: the system's own choice).
        address (str): worker or broker endpoint ('' starts a local worker).
        timeout_ms (int): reply timeout per attempt.
    """

    def __init__(self, system="deepjscc", profile="embedded", snr_db=10.0, modulation=16, code_rate=0.5,
                 budget_symbols=0, address="", timeout_ms=60000):
        worker_block.__init__(self, "gensemcom_semantic_encoder", address, profile, timeout_ms, retries=0)
        self.system = str(system)
        self.snr_db = float(snr_db)
        self.modulation, self.code_rate, self.budget_symbols = int(modulation), float(code_rate), int(budget_symbols)

    def set_snr_db(self, snr_db):
        self.snr_db = float(snr_db)

    def prepare(self, msg):
        meta, image = image_from_pdu(msg)
        req = {"system": self.system, "snr_db": self.snr_db, "modulation": self.modulation,
               "code_rate": self.code_rate}
        if self.budget_symbols > 0:
            req["budget_symbols"] = self.budget_symbols
        return "semantic_encode", {"image": image}, req, meta

    def finish(self, reply, state):
        meta, t_in = state
        header = msgpack.unpackb(reply.arrays["header"].tobytes(), raw=False) if reply.arrays["header"].size else {}
        fmeta = _python_meta(meta)
        fmeta["encode_ms"] = (time.perf_counter() - t_in) * 1e3
        extra = reply.meta.get("frame_meta") if isinstance(reply.meta, dict) else None
        if isinstance(extra, dict):  # what the system reports: caption, placeholder word, stage timings
            for k, v in extra.items():
                if isinstance(k, str) and k not in fmeta:
                    fmeta[k] = v
        fmeta["image_shape"] = [int(s) for s in np.asarray(meta_get(meta, KEY_SHAPE)).reshape(-1)]
        frame = SemanticFrame(self.system, reply.arrays["digital"].tobytes(), reply.arrays["analog"], header, fmeta)
        return frame_to_pmt(frame)


class semantic_decoder(worker_block):
    """SemanticFrame (PMT dict) in, image PDU out, computed by the inference worker.

    A frame the system cannot decode (for example its digital part failed CRC and
    the system has no fallback) is logged and counted under ``errors``.

    Args:
        system (str): semantic system, as at the encoder.
        profile (str): model profile, as at the encoder.
        address (str): worker or broker endpoint ('' starts a local worker).
        timeout_ms (int): reply timeout per attempt.
    """

    block_name = "gensemcom_semantic_decoder"

    def __init__(self, system="deepjscc", profile="embedded", address="", timeout_ms=60000):
        worker_block.__init__(self, self.block_name, address, profile, timeout_ms, retries=0)
        self.system = str(system)

    def prepare(self, msg):
        try:
            frame = frame_from_pmt(msg)
        except FrameError as e:
            raise PduError(str(e)) from None
        header = msgpack.packb(frame.header, use_bin_type=True) if frame.header else b""
        req = {"system": self.system, "crc_ok": frame.crc_ok is not False}
        if isinstance(frame.meta.get("snr_db"), (int, float)):
            req["snr_db"] = float(frame.meta["snr_db"])
        arrays = {"digital": np.frombuffer(frame.digital, np.uint8), "analog": frame.analog,
                  "header": np.frombuffer(header, np.uint8)}
        return "semantic_decode", arrays, req, frame.meta

    def finish(self, reply, state):
        fmeta, t_in = state
        meta = pmt.make_dict()
        for k, v in fmeta.items():
            if k != "image_shape":
                meta = meta_set(meta, k, v)
        meta = meta_set(meta, "decode_ms", (time.perf_counter() - t_in) * 1e3)
        return image_to_pdu(meta, reply.arrays["image"])


class frame_mapper(counting, gr.basic_block):
    """SemanticFrame in; its digital PDU (port ``digital``) and analog PDU (port ``analog``) out.

    The digital PDU (u8) carries the packed header and payload for ``digital_tx``;
    the analog PDU (c32) carries the analog part as unit-power complex symbols, two
    reals per symbol, its scale written into the header. Both carry ``frame_seq`` and
    the frame's provenance in their metadata, so ``frame_demapper`` can pair them.
    A frame without an analog part sends no analog PDU (``analog_symbols`` = 0).
    """

    def __init__(self):
        gr.basic_block.__init__(self, "gensemcom_frame_mapper", None, None)
        self._init_counters()
        self._seq = 0
        self.message_port_register_in(pmt.intern("in"))
        self.message_port_register_out(pmt.intern("digital"))
        self.message_port_register_out(pmt.intern("analog"))
        self.set_msg_handler(pmt.intern("in"), self._handle)

    def _handle(self, msg):
        self._count("n_in")
        try:
            frame = frame_from_pmt(msg)
            symbols, scale = analog_map(frame.analog)
            digital = frame.pack_digital(scale)
        except (FrameError, ValueError) as e:
            self.drop("bad frame", str(e))
            return
        meta = pmt.make_dict()
        for k, v in frame.meta.items():
            meta = meta_set(meta, k, v)
        meta = meta_set(meta, KEY_FRAME_SEQ, self._seq)
        meta = meta_set(meta, "system", frame.system)
        meta = meta_set(meta, "digital_bytes", len(digital))
        meta = meta_set(meta, "analog_symbols", int(symbols.size))
        self._seq += 1
        self.message_port_pub(pmt.intern("digital"), make_pdu(meta, np.frombuffer(digital, np.uint8), "u8"))
        if symbols.size:  # a digital-only frame sends no analog PDU (analog_symbols = 0 tells the demapper)
            self.message_port_pub(pmt.intern("analog"), make_pdu(meta, symbols, "c32"))
        self._count("n_out")


class frame_demapper(counting, gr.basic_block):
    """Received digital PDU (port ``digital``) and analog PDU (port ``analog``) in,
    SemanticFrame out.

    The two PDUs of a frame are paired by ``frame_seq``. The digital PDU's
    ``crc_ok`` decides: intact, the header gives the system, the analog length and
    scale; failed, the frame is forwarded with ``crc_ok`` False, an empty header and
    un-scaled analog symbols (systems that can fall back on the analog part may),
    never silently as good. Halves whose partner never comes are evicted after
    ``max_pending`` newer frames and counted.

    Args:
        max_pending (int): unpaired halves kept before the oldest is dropped.
    """

    def __init__(self, max_pending=8):
        gr.basic_block.__init__(self, "gensemcom_frame_demapper", None, None)
        self._init_counters()
        self.max_pending = int(max_pending)
        self._pending = collections.OrderedDict()
        self.n_crc_fail = 0
        self.message_port_register_in(pmt.intern("digital"))
        self.message_port_register_in(pmt.intern("analog"))
        self.message_port_register_out(pmt.intern("out"))
        self.set_msg_handler(pmt.intern("digital"), self._on_digital)
        self.set_msg_handler(pmt.intern("analog"), self._on_analog)

    def counters(self):
        c = counting.counters(self)
        c["crc_failed"] = self.n_crc_fail
        c["pending"] = len(self._pending)
        return c

    def _on_digital(self, msg):  # GNU Radio needs bound methods as handlers
        self._half(msg, "digital")

    def _on_analog(self, msg):
        self._half(msg, "analog")

    def _half(self, msg, which):
        self._count("n_in")
        try:
            meta, data = parse_pdu(msg, "u8" if which == "digital" else "c32", allow_empty=(which == "analog"))
            seq = meta_get(meta, KEY_FRAME_SEQ)
            if not isinstance(seq, int):
                raise PduError(f"{which} PDU has no integer '{KEY_FRAME_SEQ}'")
        except PduError as e:
            self.drop(f"bad {which} PDU", str(e))
            return
        entry = self._pending.setdefault(seq, {})
        if which in entry:
            self.drop(f"duplicate {which} PDU", f"frame_seq {seq}")
            return
        entry[which] = (meta, data)
        if which == "digital" and meta_get(meta, "analog_symbols", 1) == 0:
            entry["analog"] = (meta, np.zeros(0, np.complex64))  # a digital-only frame
        if len(entry) == 2:
            del self._pending[seq]
            self._emit(entry)
        while len(self._pending) > self.max_pending:
            old, _ = self._pending.popitem(last=False)
            self.drop("unpaired half", f"frame_seq {old} lost its partner")

    def _emit(self, entry):
        dmeta, dbytes = entry["digital"]
        _, symbols = entry["analog"]
        crc_ok = meta_get(dmeta, KEY_CRC_OK, True) is True
        fmeta = {k: v for k, v in _python_meta(dmeta).items()
                 if k not in (KEY_CRC_OK, "failed_blocks", "n_blocks", KEY_FRAME_SEQ, "system")}
        system = meta_get(dmeta, "system", "")
        fmeta["crc_ok"] = crc_ok
        if crc_ok:
            try:
                head = SemanticFrame.unpack_digital(dbytes.tobytes())
            except FrameError as e:
                self.drop("bad frame header", str(e))
                return
            analog = analog_demap(symbols, head["analog_scale"])[: head["analog_len"]]
            frame = SemanticFrame(head["system"], head["digital"], analog, head["header"], fmeta, True)
        else:
            self.n_crc_fail += 1
            self.logger.warn("digital part failed CRC: frame forwarded with crc_ok=False")
            frame = SemanticFrame(str(system), b"", analog_demap(symbols, 1.0), {}, fmeta, False)
        self.message_port_pub(pmt.intern("out"), frame_to_pmt(frame))
        self._count("n_out")


class diffusion_decoder(semantic_decoder):
    """The design's "diffusion decoder": SemanticFrame in, image PDU out, any system.

    The receiver block of the link as the design card draws it (frame -> diffusion
    decoder -> image sink). It is :class:`semantic_decoder` under that name: for TISC
    and prompt-only it runs the generative model (Stable Diffusion with the profile
    ``full``, TISC's shipped small generator with ``embedded``, random tiny models
    with ``tiny``); for the other systems it runs their own receiver. Computed by the
    inference worker, never on the scheduler thread.

    Args:
        system (str): semantic system, as at the encoder ("tisc", "prompt-only", ...).
        profile (str): model profile, as at the encoder.
        address (str): worker or broker endpoint ('' starts a local worker).
        timeout_ms (int): reply timeout per attempt (model loading on first use included).
    """

    block_name = "gensemcom_diffusion_decoder"

    def __init__(self, system="tisc", profile="embedded", address="", timeout_ms=60000):
        semantic_decoder.__init__(self, system=system, profile=profile, address=address, timeout_ms=timeout_ms)
