"""GNU Radio block: semantic decoder (SemanticFrame -> image PDU, computed by the worker)."""
from __future__ import annotations

import time

import pmt

from ..frame import FrameError, frame_from_pmt, frame_to_pmt, from_arrays, to_arrays
from .pdu_utils import PduError, image_to_pdu, meta_set
from .worker_block import worker_block


class semantic_decoder(worker_block):
    """SemanticFrame (PMT dict) in (``in``), image PDU out (``out``), computed by the
    inference worker; the receiver's feedback frames out on ``feedback``.

    A frame the system cannot decode (for example its digital part failed CRC and
    the system has no fallback) is logged and counted under ``errors``. Every image
    carries ``round`` and ``final`` in its metadata: for a system that holds a
    conversation, each round's image is published, and while the receiver wants more
    (``final`` False) its feedback frame goes out on ``feedback``, for the return link
    to carry back to the encoder. One-shot systems publish one final image per frame.
    For systems that send text (TISC, GenED-SC, prompt-only) the image's metadata also
    carries ``received_text``, the caption or prompt the receiver read.

    Args:
        system (str): semantic system, as at the encoder.
        profile (str): model profile, as at the encoder.
        address (str): worker or broker endpoint ('' starts a local worker).
        timeout_ms (int): reply timeout per attempt.
        curve_keys (str): CURVE key directory of a remote worker ('': none).
        task (str): the receiver's task for task-adaptive systems (a class label such
            as "person", "car", "all", or free text such as "the cyclist"); it travels
            to the transmitter in the feedback frame. Empty: no task.
    """

    block_name = "gensemcom_semantic_decoder"

    def __init__(self, system="deepjscc", profile="embedded", address="", timeout_ms=60000, curve_keys="", task=""):
        worker_block.__init__(self, self.block_name, address, profile, timeout_ms, retries=0,
                              curve_keys=curve_keys)
        self.system = str(system)
        self.task = str(task or "")
        self.n_feedback = 0
        self._port_fb = pmt.intern("feedback")
        self.message_port_register_out(self._port_fb)

    def counters(self):
        c = worker_block.counters(self)
        c["feedback"] = self.n_feedback
        return c

    def prepare(self, msg):
        try:
            frame = frame_from_pmt(msg)
        except FrameError as e:
            raise PduError(str(e)) from None
        arrays, meta = to_arrays(frame)
        req = dict(meta, system=self.system, crc_ok=frame.crc_ok is not False)
        if isinstance(frame.meta.get("snr_db"), (int, float)):
            req["snr_db"] = float(frame.meta["snr_db"])
        session, rnd = frame.meta.get("session"), frame.meta.get("round")
        if isinstance(session, str) and isinstance(rnd, int) and not isinstance(rnd, bool):
            req["session"], req["round"] = session, rnd
        if self.task:
            req["task"] = self.task
        return "semantic_decode", arrays, req, frame.meta

    def item_id(self, state):
        return str(state.get("image_id", "")) or None

    def finish(self, reply, state):
        fmeta, t_in = state
        final = reply.meta.get("final", True) is not False
        if not final:
            try:
                fb = from_arrays(reply.arrays, reply.meta, self.system, "fb_")
            except FrameError as e:
                raise PduError(f"the worker's feedback frame is malformed: {e}") from None
            fb.meta = {k: fmeta[k] for k in ("image_id", "path", "session", "round") if k in fmeta}
            self.message_port_pub(self._port_fb, frame_to_pmt(fb))
            self._count("n_feedback")
        meta = pmt.make_dict()
        for k, v in fmeta.items():
            if k != "image_shape":
                meta = meta_set(meta, k, v)
        meta = meta_set(meta, "decode_ms", (time.perf_counter() - t_in) * 1e3)
        meta = meta_set(meta, "final", final)
        text = reply.meta.get("received_text")
        if isinstance(text, str):
            meta = meta_set(meta, "received_text", text)
        return image_to_pdu(meta, reply.arrays["image"])
